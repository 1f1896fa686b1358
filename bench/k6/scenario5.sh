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
# AUTO_INITIALIZE_ON_EVENT (default true); PG_SSLMODE (default disable, lib.sh); PIN=1 to run k6 on CPU 1 and the pair plus
# Postgres on CPU 0 with taskset (default: no pinning); OUT (default /tmp/scenario5-<time>);
# SPLIT (30): seconds of the opening window of the per-route p95 (see below); PERF=1;
# TIMELINE=1; WIRE=1 (needs tcpdump).
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
DBURL="$PG/$DB$PG_DB_QUERY"
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
# The service's latency histograms at SPLIT (30) seconds and at the end: the API's p95 after
# the opening burst (every VU initializes at second 0) apart from the whole run's.
( sleep "${SPLIT:-30}"; curl -s localhost:18565/metrics > "$OUT/service-metrics-split.txt" ) &
# PERF=1: a CPU profile of the handler for 20 s from second 60 (top symbols in perf-top.txt).
if [[ "${PERF:-0}" == 1 ]]; then
  ( sleep 60; perf record -F 499 -g -p "$HANDLER" -o "$OUT/perf.data" -- sleep 20 > "$OUT/perf-record.log" 2>&1
    perf report -i "$OUT/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null |
      grep -E '^ +[0-9]' | head -40 > "$OUT/perf-top.txt" ) &
fi
# TIMELINE=1: each process group's CPU every 0.25 s over the first 25 s (k6's VU
# initialization, then the opening burst; bench/cpu_timeline.py) in cpu-timeline.txt.
if [[ "${TIMELINE:-0}" == 1 ]]; then
  python3 "$ROOT/bench/cpu_timeline.py" 25 0.25 handler=$HANDLER service=$SERVICE \
    postgres=comm:postgres k6=comm:k6 > "$OUT/cpu-timeline.txt" &
fi
# WIRE=1: the API's packets over the first 30 s (tcpdump on lo, headers only), for the
# latency the wire saw (bench/wire_latency.py), beside k6's and the service's.
if [[ "${WIRE:-0}" == 1 ]]; then
  timeout 40 tcpdump -i lo -s 128 -w "$OUT/api.pcap" tcp port 18000 2>/dev/null &
  sleep 1
fi
echo "scenario5: k6 for ${SECS}s (durable, AUTO_INITIALIZE_ON_EVENT=${AUTO_INITIALIZE_ON_EVENT:-true}, PIN=${PIN:-0}) -> $OUT" >&2
(cd "$lay/tests/loadtest/k6" && export BASE_URL=http://127.0.0.1:18000/challenge \
  EVENT_HANDLER_ADDR=127.0.0.1:16566 NAMESPACE=test &&
  k6_run "$SECS" 16699 "$OUT/k6.txt" -- "${pin_k6[@]}" "$K6" run --no-usage-report scenario5_m5_rotation.js)
curl -s localhost:18565/metrics > "$OUT/service-metrics-end.txt"
curl -s localhost:18566/metrics > "$OUT/handler-metrics-end.txt"
hz=$(getconf CLK_TCK)
h1=$(ticks $HANDLER) s1=$(ticks $SERVICE) p1=$(pg_ticks)
k6_t1=$(awk '{print $16 + $17}' /proc/$$/stat)
sed -n '/THRESHOLDS/,$p' "$OUT/k6.txt" | grep -v "^\s*$" | head -80 || echo "(k6 printed no summary)"
{
  echo "cpu seconds: handler $(( (h1 - h0) / hz )), service $(( (s1 - s0) / hz )), postgres $(( (p1 - p0) / hz )), k6 $(( (k6_t1 - k6_t0) / hz )) over ${SECS}s"
  psql "$DBURL" -tAc "select 'rows: '||count(*)||' ('||count(*) filter (where goal_id = '')||' markers, '||count(distinct user_id)||' players)' from user_goal_progress"
  grep -E '^challenge_flush_duration_seconds_(sum|count)|^challenge_flush_lost_races_total|^challenge_dedup_ledger_lookups_total' "$OUT/handler-metrics-end.txt"
  echo "flush time by phase (seconds, summed over batches):"
  grep -E '^challenge_flush_phase_seconds_sum' "$OUT/handler-metrics-end.txt" | sed 's/^challenge_flush_phase_seconds_sum/  /'
  echo "REST p95 by route (bucket upper bound, the service's own histogram): first ${SPLIT:-30} s | after"
  python3 "$ROOT/bench/k6/window_p95.py" "$OUT/service-metrics-split.txt" "$OUT/service-metrics-end.txt"
  if [[ -s "$OUT/api.pcap" ]]; then
    echo "REST latency on the wire, first 40 s (bench/wire_latency.py):"
    python3 "$ROOT/bench/wire_latency.py" "$OUT/api.pcap" 18000
  fi
} | tee "$OUT/summary.txt"
