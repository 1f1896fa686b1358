#!/usr/bin/env bash
# Issue 13's figures: erasure latency while events flow, and retention cleanup throughput
# beside the same event load (with and without the cleanup).
#
#   bench/run.sh build && cargo build --release -p extend-challenge-service
#   bench/lifecycle.sh
#
# Two runs of DUR seconds each, on a fresh database (10,000 players in the light layout, plus
# ERASURES players to erase and CLEANUP_ROWS expired rows):
#   off: CLEANUP_ENABLED=false — events at EPS/s, and ERASURES DELETE /v1/users/me/data
#        spread over the run (ERASE_CONC at a time);
#   on:  the same, with CLEANUP_ENABLED=true and CLEANUP_INTERVAL_MINUTES=1, so the first
#        cleanup cycle (one minute after start) runs in the middle of the load.
# Prints the event figures of each run (the load generator's JSON), the erasure latency
# percentiles, and the cleanup metrics (rows deleted, cycle duration).
# Knobs: EPS (500), DUR (90), ERASURES (500), ERASE_CONC (4), CLEANUP_ROWS (100000), OUT.
# Loopback only; every server is started under `timeout`, every loop is bounded.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LG="$ROOT/target/release/loadgen"
HANDLER=${HANDLER_BIN:-$ROOT/target/release/extend-challenge-event-handler}
SERVICE=${SERVICE_BIN:-$ROOT/target/release/extend-challenge-service}
PG=postgres://postgres@127.0.0.1:5432
DB=${BENCH_DB:-bench_lifecycle}
DBURL="$PG/$DB"
FIXTURE="$ROOT/bench/fixtures/challenges-light.json"
EPS=${EPS:-500}
DUR=${DUR:-90}
ERASURES=${ERASURES:-500}
ERASE_CONC=${ERASE_CONC:-4}
ROWS=${CLEANUP_ROWS:-100000}
OUT=${OUT:-$ROOT/target/bench-results/lifecycle-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/run.log" >&2; }

wait_port() {
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  log "nothing listening on $1"
  return 1
}

metric() { # port name: the sum of the series of one metric
  curl -s "127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $2 } END { print s + 0 }'
}

run() { # off|on
  local mode=$1 cleanup=false
  [ "$mode" = on ] && cleanup=true
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
  "$LG" seed --database-url "$DBURL" --users 10000 --challenges-per-user 10 --layout light >> "$OUT/run.log"
  # Players to erase (10 rows each) and expired rows for the cleanup (10 per player, expired
  # 8 days ago: past the 7-day retention; goal ids outside the config, so nothing guards them).
  psql "$DBURL" -qc "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace)
      SELECT 'erase-' || u, 'g' || g, 'c', 'bench'
      FROM generate_series(1, $ERASURES) u, generate_series(1, 10) g" \
    -c "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, expires_at)
      SELECT 'old-' || u, 'g' || g, 'c', 'bench', now() - interval '8 days'
      FROM generate_series(1, $ROWS / 10) u, generate_series(1, 10) g" -c "VACUUM ANALYZE"
  local env=(DATABASE_URL="$DBURL" AB_NAMESPACE=bench CONFIG_PATH="$FIXTURE"
    CHALLENGE_CONFIG_PATH="$FIXTURE" LOG_LEVEL=warn)
  env "${env[@]}" GRPC_PORT=16585 METRICS_PORT=18095 \
    timeout $((DUR + 120)) "$HANDLER" > "$OUT/handler-$mode.log" 2>&1 &
  local hpid=$!
  env "${env[@]}" GRPC_PORT=16586 HTTP_PORT=18016 METRICS_PORT=18096 \
    PLUGIN_GRPC_SERVER_AUTH_ENABLED=false REWARD_CLIENT_MODE=mock \
    CLEANUP_ENABLED=$cleanup CLEANUP_INTERVAL_MINUTES=1 CLEANUP_RETENTION_DAYS=7 \
    timeout $((DUR + 120)) "$SERVICE" > "$OUT/service-$mode.log" 2>&1 &
  local spid=$!
  wait_port 16585
  wait_port 18016
  log "run $mode: events at $EPS/s for ${DUR}s, $ERASURES erasures, cleanup $cleanup"
  "$LG" events --grpc 127.0.0.1:16585 --rate "$EPS" --duration "$DUR" --users 10000 \
    --max-in-flight 500 --layout light --database-url "$DBURL" \
    --label "lifecycle events $EPS/s cleanup=$cleanup" --out "$OUT/results.jsonl" \
    > "$OUT/events-$mode.json" &
  local lpid=$!
  python3 - "$ERASURES" "$ERASE_CONC" "$((DUR - 10))" > "$OUT/erasures-$mode.json" <<'EOF'
import json, sys, threading, time, urllib.request
n, conc, span = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
lat, codes, lock = [], {}, threading.Lock()
start = time.monotonic()
def worker(k):
    for i in range(k, n, conc):
        due = start + span * i / n
        time.sleep(max(0.0, due - time.monotonic()))
        req = urllib.request.Request("http://127.0.0.1:18016/challenge/v1/users/me/data",
                                     method="DELETE", headers={"x-mock-user-id": f"erase-{i + 1}"})
        t = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                code = r.status
                r.read()
        except urllib.error.HTTPError as e:
            code = e.code
        except Exception:
            code = 0
        with lock:
            lat.append((time.monotonic() - t) * 1000)
            codes[code] = codes.get(code, 0) + 1
threads = [threading.Thread(target=worker, args=(k,)) for k in range(conc)]
for t in threads: t.start()
for t in threads: t.join()
lat.sort()
pct = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else None
print(json.dumps({"erasures": n, "statuses": codes, "p50_ms": pct(0.50), "p95_ms": pct(0.95),
                  "p99_ms": pct(0.99), "max_ms": round(lat[-1], 2) if lat else None}))
EOF
  wait $lpid || log "events run $mode failed or invalid (see events-$mode.json)"
  {
    echo "cleanup rows deleted: $(metric 18096 challenge_cleanup_rows_deleted_total)"
    echo "cleanup cycles: $(metric 18096 challenge_cleanup_cycles_total)"
    echo "cleanup seconds (sum of cycles): $(metric 18096 challenge_cleanup_duration_seconds_sum)"
    echo "expired rows left: $(psql "$DBURL" -tAc "select count(*) from user_goal_progress where user_id like 'old-%'")"
    echo "erased players' rows left: $(psql "$DBURL" -tAc "select count(*) from user_goal_progress where user_id like 'erase-%'")"
  } | tee "$OUT/cleanup-$mode.txt"
  cat "$OUT/erasures-$mode.json"
  kill -TERM "$hpid" "$spid" 2>/dev/null || true
  wait "$hpid" "$spid" 2>/dev/null || true
}

log "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
run off
run on
log "results in $OUT"
