#!/usr/bin/env bash
# Issue 22 part 3: what hash partitioning by user costs. The base build (BASE_ROOT: a worktree of
# the commit before migration 0012, built with `bench/run.sh build` there) on plain tables
# against this tree's build with DB_PARTITIONS=PARTITIONS (16), alternated base, new, base, new:
#   - durable events on the light layout at 5,000 and 10,000/s (bench/run.sh s2);
#   - the 500-goal list at 64 in flight on USERS_LIST (2,000) players (bench/run.sh list);
# then one short soak (SOAK_MIN minutes on USERS_SOAK players) per build (bench/soak.sh).
# Ports 17xxx; database schema_bench / schema_soak. Take the machine's bench lock around it:
#   flock /tmp/bench.lock bench/ab_partitions.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE_ROOT=${BASE_ROOT:?set BASE_ROOT to the base worktree}
P=${PARTITIONS:-16}
ROUNDS=${ROUNDS:-2}
OUT=${OUT:-$ROOT/target/bench-results/partitions-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
ports=(HANDLER_GRPC_PORT=17565 HANDLER_METRICS_PORT=17081 SERVICE_HTTP_PORT=17100
  SERVICE_GRPC_PORT=17566 SERVICE_METRICS_PORT=17082)
tree() { [ "$1" = base ] && echo "$BASE_ROOT" || echo "$ROOT"; }
parts() { [ "$1" = base ] && echo 0 || echo "$P"; }
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/ab.log" >&2; }

for r in $(seq 1 "$ROUNDS"); do
  for b in base new; do
    log "round $r: $b s2"
    env "${ports[@]}" BENCH_DB=schema_bench DB_PARTITIONS="$(parts $b)" OUT="$OUT/$b-r$r-s2" \
      WARMUP=6 DUR=${DUR:-15} LAYOUT=light MODES=durable EPS_LIST="5000 10000" "$(tree $b)/bench/run.sh" s2
    log "round $r: $b list"
    env "${ports[@]}" BENCH_DB=schema_bench DB_PARTITIONS="$(parts $b)" OUT="$OUT/$b-r$r-list" \
      USERS=${USERS_LIST:-2000} DUR=${DUR_LIST:-10} LIST_QUERIES=- "$(tree $b)/bench/run.sh" list
  done
done
for b in base new; do
  log "soak: $b"
  env BENCH_DB=schema_soak DB_PARTITIONS="$(parts $b)" OUT="$OUT/$b-soak" SOAK_MIN=${SOAK_MIN:-3} \
    USERS=${USERS_SOAK:-5000} "$(tree $b)/bench/soak.sh"
done
log "results under $OUT"
