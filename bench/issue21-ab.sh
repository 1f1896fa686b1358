#!/usr/bin/env bash
# Issue 21 A/B, run under `flock /tmp/bench.lock`. base = 42c1de9, new = wip-trail (trail on / off).
set -u
cd "$(dirname "$0")/.."
export BENCH_DB=trail_bench HANDLER_GRPC_PORT=19565 HANDLER_METRICS_PORT=19081 \
  SERVICE_HTTP_PORT=19000 SERVICE_GRPC_PORT=19566 SERVICE_METRICS_PORT=19082
OUTROOT=$PWD/target/bench-results/issue21-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUTROOT"
BASE=${BASE_BIN:-/tmp/trail-base-target/release/extend-challenge-event-handler}  # 42c1de9, own target dir
NEW=$PWD/target/release/extend-challenge-event-handler
run() { # name handler extra-env...
  local name=$1 bin=$2; shift 2
  echo "[$(date -u +%T)] $name" >> "$OUTROOT/order.log"
  env "$@" OUT="$OUTROOT/$name" HANDLER_BIN="$bin" WARMUP=6 DUR=15 LAYOUT=light MODES=durable \
    EPS_LIST="${EPS_LIST:-10000}" bench/run.sh s2 > "$OUTROOT/$name.out" 2>&1
}
uptime >> "$OUTROOT/order.log"
for r in 1 2; do
  run base-r$r "$BASE" MIGRATE_ON_START=false
  run new-r$r "$NEW" EVENT_TRAIL_ENABLED=true
  run notrail-r$r "$NEW" EVENT_TRAIL_ENABLED=false
done
OUT="$OUTROOT/streams" STREAMS=10000 HOLD=20 bench/run.sh streams > "$OUTROOT/streams.out" 2>&1
uptime >> "$OUTROOT/order.log"
echo "$OUTROOT"
