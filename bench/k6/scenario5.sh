#!/usr/bin/env bash
# AccelByte's M5 rotation stress (scenario5_m5_rotation.js), unmodified, against our release
# pair in durable mode, on the M5 load-test catalog (150 default goals per player,
# bench/k6/m5_catalog.py). The script and its fixtures (users.json, tokens.json) come from a
# checkout of AccelByte/extend-challenge-suite at a commit that has the scenario (not
# committed here); the protos it loads are our vendored copies.
#
#   bench/k6/scenario5.sh SUITE_DIR [k6 seconds, default 240]
#
# Env: BASE=<git rev> to run another build (built in its own worktree under target/);
# AUTO_INITIALIZE_ON_EVENT (default true); PIN=1 to run k6 on CPU 1 and the pair plus
# Postgres on CPU 0 with taskset (default: no pinning); OUT (default /tmp/scenario5-<time>).
# Prints k6's summary, the CPU seconds each process used (the split), the rows written, and
# the handler's flush figures.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
SUITE=${1:?usage: $0 SUITE_DIR [seconds]}
SECS=${2:-240}
OUT=${OUT:-/tmp/scenario5-$(date +%H%M%S)}
mkdir -p "$OUT"
DB=scenario5_bench
K6=$(k6_bin)
bin_dir=$(bins "${BASE:-}")

# The suite's layout: tests/loadtest/{k6,fixtures}; the script loads its proto from
# ../../../extend-challenge-event-handler/pkg/proto (relative to k6/).
lay=$(mktemp -d /tmp/scenario5-layout.XXXX)
mkdir -p "$lay/tests/loadtest/k6" "$lay/tests/loadtest/fixtures" "$lay/extend-challenge-event-handler/pkg"
cp "$SUITE/tests/loadtest/k6/scenario5_m5_rotation.js" "$lay/tests/loadtest/k6/"
cp "$SUITE/tests/loadtest/fixtures/users.json" "$SUITE/tests/loadtest/fixtures/tokens.json" "$lay/tests/loadtest/fixtures/"
cp -r "$ROOT/extend-challenge-common/proto" "$lay/extend-challenge-event-handler/pkg/proto"
python3 "$ROOT/bench/k6/m5_catalog.py" 50 > "$lay/challenges.json"

fresh_db $DB
DBURL="$PG/$DB"
pin_pair=() pin_k6=()
if [[ "${PIN:-0}" == 1 ]]; then
  pin_pair=(taskset -c 0) pin_k6=(taskset -c 1)
  # A backend may exit between pgrep and taskset.
  for p in $(pgrep -x postgres); do taskset -pc 0 "$p" >/dev/null 2>&1 || true; done
fi
common=(DATABASE_URL="$DBURL" AB_NAMESPACE=test CHALLENGE_CONFIG_PATH="$lay/challenges.json"
  CONFIG_PATH="$lay/challenges.json" LOG_LEVEL=warn)
env "${common[@]}" GRPC_PORT=16566 METRICS_PORT=18566 \
  AUTO_INITIALIZE_ON_EVENT="${AUTO_INITIALIZE_ON_EVENT:-true}" \
  "${pin_pair[@]}" "$bin_dir/extend-challenge-event-handler" > "$OUT/handler.log" 2>&1 &
HANDLER=$!
env "${common[@]}" GRPC_PORT=16565 HTTP_PORT=18000 METRICS_PORT=18565 \
  PLUGIN_GRPC_SERVER_AUTH_ENABLED=false REWARD_CLIENT_MODE=mock \
  "${pin_pair[@]}" "$bin_dir/extend-challenge-service" > "$OUT/service.log" 2>&1 &
SERVICE=$!
trap 'kill $HANDLER $SERVICE 2>/dev/null || true; for p in $(pgrep -x postgres); do taskset -pc 0-1 "$p" >/dev/null 2>&1 || true; done; rm -rf "$lay"' EXIT
wait_port 16566; wait_port 18000
h0=$(ticks $HANDLER) s0=$(ticks $SERVICE) p0=$(pg_ticks)
k6_t0=$(awk '{print $16 + $17}' /proc/$$/stat)
echo "scenario5: k6 for ${SECS}s (durable, AUTO_INITIALIZE_ON_EVENT=${AUTO_INITIALIZE_ON_EVENT:-true}, PIN=${PIN:-0}) -> $OUT" >&2
(cd "$lay/tests/loadtest/k6" && BASE_URL=http://127.0.0.1:18000/challenge EVENT_HANDLER_ADDR=127.0.0.1:16566 \
  NAMESPACE=test timeout -s INT "$SECS" "${pin_k6[@]}" "$K6" run --no-usage-report \
  scenario5_m5_rotation.js) > "$OUT/k6.txt" 2>&1 || true
hz=$(getconf CLK_TCK)
h1=$(ticks $HANDLER) s1=$(ticks $SERVICE) p1=$(pg_ticks)
k6_t1=$(awk '{print $16 + $17}' /proc/$$/stat)
sed -n '/THRESHOLDS/,$p' "$OUT/k6.txt" | grep -v "^\s*$" | head -80 || echo "(k6 printed no summary: it was stopped hard)"
{
  echo "cpu seconds: handler $(( (h1 - h0) / hz )), service $(( (s1 - s0) / hz )), postgres $(( (p1 - p0) / hz )), k6 $(( (k6_t1 - k6_t0) / hz )) over ${SECS}s"
  psql "$DBURL" -tAc "select 'rows: '||count(*)||' ('||count(*) filter (where goal_id = '')||' markers, '||count(distinct user_id)||' players)' from user_goal_progress"
  curl -s localhost:18566/metrics | grep -E '^challenge_flush_duration_seconds_(sum|count)|^challenge_flush_lost_races_total|^challenge_dedup_ledger_lookups_total'
} | tee "$OUT/summary.txt"
