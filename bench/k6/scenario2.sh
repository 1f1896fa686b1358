#!/usr/bin/env bash
# AccelByte's scenario 2 (scenario2_event_load.js: 500 events/s, 20 % logins, stat events
# without a timestamp), unmodified, against the release event handler in durable mode, on the
# reference service's own challenge config — for several builds back to back, alternated, so
# they see the same machine.
#
#   bench/k6/scenario2.sh SUITE_DIR SERVICE_CONFIG [seconds, default 60] [rounds, default 2]
#
# SUITE_DIR: a checkout of AccelByte/extend-challenge-suite (tests/loadtest/k6/
# scenario2_event_load.js and tests/loadtest/fixtures/users.json); SERVICE_CONFIG: the
# reference service's config/challenges.json. Env: REVS (default "78c52a4 HEAD": the builds,
# each in its own worktree under target/; "." is the working tree's own release build; an entry
# may carry handler settings after a colon, comma-separated: ".:EVENT_TRAIL_ENABLED=false"),
# EPS (default 500), PIN=1 (k6 on CPU 1, handler and
# Postgres on CPU 0). Prints, per build and round, k6's gRPC latency line and checks, and the
# handler's ledger look-ups and flush figures.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
SUITE=${1:?usage: $0 SUITE_DIR SERVICE_CONFIG [seconds] [rounds]}
CONFIG=${2:?usage: $0 SUITE_DIR SERVICE_CONFIG [seconds] [rounds]}
SECS=${3:-60}
ROUNDS=${4:-2}
OUT=${OUT:-/tmp/scenario2-$(date +%H%M%S)}
mkdir -p "$OUT"
K6=$(k6_bin)
declare -A dir
for entry in ${REVS:-78c52a4 HEAD}; do
  rev=${entry%%:*}
  [[ -n "${dir[$rev]:-}" ]] && continue
  if [[ "$rev" == . ]]; then dir[$rev]=$(bins ""); else dir[$rev]=$(bins "$(git -C "$ROOT" rev-parse --short "$rev")"); fi
done

lay=$(mktemp -d /tmp/scenario2-layout.XXXX)
trap 'rm -rf "$lay"; for p in $(pgrep -x postgres); do taskset -pc 0-1 "$p" >/dev/null 2>&1 || true; done' EXIT
mkdir -p "$lay/tests/loadtest/k6" "$lay/tests/loadtest/fixtures" "$lay/tests/extend-challenge-event-handler/pkg"
cp "$SUITE/tests/loadtest/k6/scenario2_event_load.js" "$lay/tests/loadtest/k6/"
cp "$SUITE/tests/loadtest/fixtures/users.json" "$lay/tests/loadtest/fixtures/"
cp -r "$ROOT/extend-challenge-common/proto" "$lay/tests/extend-challenge-event-handler/pkg/proto"
pin_h=() pin_k6=()
if [[ "${PIN:-0}" == 1 ]]; then
  pin_h=(taskset -c 0) pin_k6=(taskset -c 1)
  for p in $(pgrep -x postgres); do taskset -pc 0 "$p" >/dev/null 2>&1 || true; done
fi

for round in $(seq "$ROUNDS"); do
  for entry in ${REVS:-78c52a4 HEAD}; do
    rev=${entry%%:*}
    settings=()
    [[ "$entry" == *:* ]] && IFS=, read -ra settings <<< "${entry#*:}"
    tag=${entry//[^A-Za-z0-9_.=-]/_}
    fresh_db scenario2_bench
    env "${settings[@]}" DATABASE_URL="$PG/scenario2_bench$PG_DB_QUERY" AB_NAMESPACE=test CHALLENGE_CONFIG_PATH="$CONFIG" \
      CONFIG_PATH="$CONFIG" GRPC_PORT=16600 METRICS_PORT=18600 LOG_LEVEL=warn \
      "${pin_h[@]}" "${dir[$rev]}/extend-challenge-event-handler" > "$OUT/handler-$tag-$round.log" 2>&1 &
    h=$!
    wait_port 16600
    h0=$(ticks $h) p0=$(pg_ticks)
    (cd "$lay/tests/loadtest/k6" && export EVENT_HANDLER_ADDR=127.0.0.1:16600 TARGET_EPS=${EPS:-500} NAMESPACE=test &&
      k6_run "$((SECS + 15))" 16699 "$OUT/k6-$tag-$round.txt" -- "${pin_k6[@]}" "$K6" run --no-usage-report scenario2_event_load.js)
    h1=$(ticks $h) p1=$(pg_ticks)
    {
      echo "== $entry round $round: handler $(( (h1 - h0) / $(getconf CLK_TCK) )) CPU s, Postgres $(( (p1 - p0) / $(getconf CLK_TCK) )) CPU s"
      grep -E "grpc_req_duration|checks\.|✓ checks|✗ checks" "$OUT/k6-$tag-$round.txt" | head -3
      curl -s localhost:18600/metrics | grep -E '^challenge_dedup_ledger_lookups_total|^challenge_flush_duration_seconds_(sum|count)'
    } | tee -a "$OUT/summary.txt"
    kill $h; wait $h 2>/dev/null || true
  done
done
