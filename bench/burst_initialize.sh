#!/usr/bin/env bash
# The opening burst of AccelByte's scenario 5 without the rest of it: a fresh database and a
# fresh service (the M5 catalog, 150 default goals per player) on CPU 0 with Postgres, then
# three bursts of 150 concurrent first `initialize` calls from CPU 1
# (bench/burst_initialize.py); the first is the one scenario 5 sees.
#
#   bench/burst_initialize.sh [BIN_DIR, default: the release build of the working tree] [tag]
#
# Env: PG_SSLMODE (default disable, bench/k6/lib.sh), DB_WARM_CONNS (the service's default).
set -euo pipefail
source "$(dirname "$0")/k6/lib.sh"
BIN=${1:-$(bins "")}
TAG=${2:-burst}
DB=burst_initialize
fresh_db $DB 2>/dev/null
catalog=$(mktemp /tmp/burst-catalog.XXXX.json)
python3 "$ROOT/bench/k6/m5_catalog.py" 50 > "$catalog"
for p in $(pgrep -x postgres); do taskset -pc 0 "$p" >/dev/null 2>&1 || true; done
env DATABASE_URL="$PG/$DB$PG_DB_QUERY" AB_NAMESPACE=test CHALLENGE_CONFIG_PATH="$catalog" \
  LOG_LEVEL=warn GRPC_PORT=17565 HTTP_PORT=17000 METRICS_PORT=17566 \
  PLUGIN_GRPC_SERVER_AUTH_ENABLED=false REWARD_CLIENT_MODE=mock \
  taskset -c 0 "$BIN/extend-challenge-service" > /tmp/burst-service.log 2>&1 &
S=$!
trap 'kill $S 2>/dev/null || true; for p in $(pgrep -x postgres); do taskset -pc 0-1 "$p" >/dev/null 2>&1 || true; done; rm -f "$catalog"' EXIT
wait_port 17000
sleep 1
for round in 1 2 3; do taskset -c 1 python3 "$ROOT/bench/burst_initialize.py" "$TAG-$round" 150; done
