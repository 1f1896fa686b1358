#!/usr/bin/env bash
# Benchmark suite for issue #5: ceilings, then our two binaries under the reference scenarios.
#
#   bench/run.sh build              release builds of loadgen and both binaries
#   bench/run.sh ceilings           trivial HTTP/gRPC servers + Postgres alone (same machine, same run)
#   bench/run.sh s2                 events (ACK_MODE=buffered and durable) at each rate in EPS_LIST
#   bench/run.sh s1 | s3 | s4 | init
#   bench/run.sh k6                 the reference's own k6 scenario 2, unmodified, against our handler
#   bench/run.sh profile            perf profile of the handler at PROFILE_EPS (250) events/s
#   bench/run.sh streams            STREAMS (10000) idle live progress streams: the service's memory
#   bench/run.sh tail               durable events at EPS (5000)/s with Postgres, handler and scheduler
#                                   instruments: where the p99 goes (issue 22 part 1)
#   bench/run.sh all                everything above (but profile), in that order
#
# Knobs (env): DUR (s per run, 20), USERS (10000), EPS_LIST, RPS, EPS, CHALLENGES_PER_USER (10 =
# all 500 goals, the reference's Phase 15 layout), BENCH_DB (bench_loadgen), OUT (results dir),
# LAYOUT (reference | light: s2 and profile only; the handler then loads
# bench/fixtures/challenges-light.json and an event writes 1–2 rows instead of ~90),
# REPEAT (1: each measured run is repeated that many times; bench/summarize.py prints medians),
# HANDLER_GRPC_PORT / HANDLER_METRICS_PORT (16565 / 18081), STOP_WAIT (30: seconds a server
# gets after SIGTERM before SIGKILL; the time it took is logged and appended to results.jsonl
# as a "shutdown" line), MODES (s2: "buffered durable"), HANDLER_BIN / SERVICE_BIN / LOADGEN_BIN (measure
# another build, e.g. an older commit's, with this script and load generator), WARMUP (0: seconds
# between the handler's start and the load, to measure past its 5 s start-up ledger window).
# DB_PARTITIONS (the seed's migration 0012: hash partitions by user; 0 = none).
# Loopback only; every server is started under `timeout` and every load loop is bounded.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LG=${LOADGEN_BIN:-$ROOT/target/release/loadgen}  # LOADGEN_BIN: another build's (it seeds with its migrations)
HANDLER=${HANDLER_BIN:-$ROOT/target/release/extend-challenge-event-handler}  # HANDLER_BIN / SERVICE_BIN: A/B
SERVICE=${SERVICE_BIN:-$ROOT/target/release/extend-challenge-service}        # against another build
DB=${BENCH_DB:-bench_loadgen}
PG=postgres://postgres@127.0.0.1:5432
DBURL="$PG/$DB"
SPORT=${SERVICE_HTTP_PORT:-18000}     # the service's ports (others, to run beside someone else's bench)
SGPORT=${SERVICE_GRPC_PORT:-16566}
SMPORT=${SERVICE_METRICS_PORT:-18082}
API="http://127.0.0.1:$SPORT/challenge"
DUR=${DUR:-20}
USERS=${USERS:-10000}
CPU_USER=${CHALLENGES_PER_USER:-10}
OUT=${OUT:-$ROOT/target/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
RESULTS="$OUT/results.jsonl"
HPORT=${HANDLER_GRPC_PORT:-16565}     # the event handler's gRPC port (another, to run beside someone else's bench)
HMPORT=${HANDLER_METRICS_PORT:-18081}
LAYOUT=${LAYOUT:-reference}
REPEAT=${REPEAT:-1}
case "$LAYOUT" in
  reference) FIXTURE="$ROOT/bench/fixtures/challenges.json"; LSFX="" ;;
  light) FIXTURE="$ROOT/bench/fixtures/challenges-light.json"; LSFX=" layout=light" ;;
  *) echo "LAYOUT=$LAYOUT: expected reference or light" >&2; exit 2 ;;
esac
case "$LAYOUT:${1:-all}" in
  light:s2 | light:profile | light:tail | light:build | reference:*) ;;
  *) echo "LAYOUT=light is for s2 and profile only" >&2; exit 2 ;;
esac
mkdir -p "$OUT"

log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/run.log" >&2; }

machine() {
  {
    echo "date: $(date -u +%FT%TZ)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) x $(nproc)"
    echo "mem: $(free -g | awk '/Mem:/{print $2}') GiB; kernel $(uname -r)"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    psql "$PG/postgres" -tAc "select version()"
    psql "$PG/postgres" -tAc "select 'max_wal_size='||current_setting('max_wal_size')||' shared_buffers='||current_setting('shared_buffers')||' synchronous_commit='||current_setting('synchronous_commit')"
  } > "$OUT/machine.txt"
  cat "$OUT/machine.txt" >&2
}

build() {
  (cd "$ROOT" && cargo build --release -p loadgen)
  (cd "$ROOT" && cargo build --release -p extend-challenge-event-handler -p extend-challenge-service) ||
    log "binaries did not build (not landed yet?)"
}

fresh_db() { # [layout] (default $LAYOUT)
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
  "$LG" seed --database-url "$DBURL" --users "$USERS" --challenges-per-user "$CPU_USER" \
    --layout "${1:-$LAYOUT}" | tee -a "$OUT/run.log"
}

reps() { seq 1 "$REPEAT"; }
rsfx() { [ "$REPEAT" -gt 1 ] && echo "-r$1" || true; } # file-name suffix of repeat $1

drop_db() { psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"; }

port_free() { # port: refuse to measure someone else's server
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then log "port $1 already in use; stop that process first"; exit 1; fi
}

wait_port() { # host:port
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
    sleep 0.1
  done
  log "nothing listening on $1"; return 1
}

# The binary itself, not the `timeout` wrapper, so CPU and RSS are the server's own.
child_of() {
  local c
  for _ in $(seq 1 50); do
    c=$(pgrep -P "$1" | head -n1) && [ -n "$c" ] && { echo "$c"; return; }
    sleep 0.1
  done
  echo "$1"
}

# SIGTERM, then SIGKILL after STOP_WAIT s. With a name and a label, how long the process took
# to exit is logged and appended to results.jsonl:
#   {"kind":"shutdown","scenario":label,"process":name,"sigterm_to_exit_s":…,"killed":…}
stop() { # pid [name label [repeat]]
  local t0 t1 secs killed=false limit=$(( ${STOP_WAIT:-30} * 20 )) n=0
  t0=$(date +%s.%N)
  kill -TERM "$1" 2>/dev/null || true
  while kill -0 "$1" 2>/dev/null; do
    n=$((n + 1))
    if [ "$n" -gt "$limit" ]; then
      kill -KILL "$1" 2>/dev/null || true; killed=true
      while kill -0 "$1" 2>/dev/null; do sleep 0.05; done
      break
    fi
    sleep 0.05
  done
  t1=$(date +%s.%N)
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  [ -n "${2:-}" ] || return 0
  log "$2 ($3): exited $(printf '%.2f' "$secs") s after SIGTERM$($killed && echo ", SIGKILLed after ${STOP_WAIT:-30} s")"
  jq -cn --arg s "$3" --arg p "$2" --argjson t "$secs" --argjson k "$killed" --argjson w "${STOP_WAIT:-30}" \
    --argjson r "${4:-1}" \
    '{kind:"shutdown",scenario:$s,process:$p,sigterm_to_exit_s:$t,killed:$k,stop_wait_s:$w,repeat:$r}' >> "$RESULTS"
}

peak_rss() { grep -E 'VmHWM|VmRSS' "/proc/$1/status" 2>/dev/null | tr -s ' ' | tr '\n' ' '; }

ceilings() {
  log "ceiling: trivial axum server"
  port_free 18080
  "$LG" serve-http --port 18080 --lifetime 600 > "$OUT/serve-http.log" 2>&1 & local hp=$!
  wait_port 127.0.0.1:18080
  for path in tiny big; do
    for rep in $(reps); do
      if command -v wrk >/dev/null; then
        log "wrk -t2 -c64 -d${DUR}s /$path (repeat $rep/$REPEAT)"
        wrk -t2 -c64 -d"${DUR}s" --latency "http://127.0.0.1:18080/$path" | tee "$OUT/wrk-$path$(rsfx $rep).txt" >&2
      fi
      # The same client that measures the service: closed loop, 64 in flight.
      "$LG" http --url "http://127.0.0.1:18080/$path" --closed 64 --duration "$DUR" --repeat "$rep" \
        --label "ceiling: axum /$path (loadgen, 64 in flight)" --pids "server=$hp" --out "$RESULTS" > /dev/null
    done
  done
  stop $hp

  log "ceiling: no-op tonic OnMessage"
  port_free 18565
  "$LG" serve-grpc --port 18565 --lifetime 600 > "$OUT/serve-grpc.log" 2>&1 & local gp=$!
  wait_port 127.0.0.1:18565
  # --threads 1: the generator on tokio's current-thread runtime, its lightest (issue 10: it
  # must spend less CPU per call than the no-op server it measures; both are in the results).
  for inflight in 64 500; do
    for rep in $(reps); do
      "$LG" events --grpc 127.0.0.1:18565 --closed $inflight --duration "$DUR" --verify false --repeat "$rep" \
        --threads 1 --label "ceiling: tonic no-op OnMessage ($inflight in flight)" --pids "server=$gp" \
        --out "$RESULTS" > /dev/null
    done
  done
  stop $gp

  # The same no-op ceiling from an independent HTTP/2 load tool (bench/h2load.sh: h2load from
  # nghttp2-client, the same request body, the same in-flight counts, checked against the
  # server's own count of answered calls).
  if command -v h2load >/dev/null; then
    log "ceiling: no-op tonic OnMessage, h2load"
    OUT="$OUT" DUR="$DUR" REPEAT="$REPEAT" LG="$LG" "$ROOT/bench/h2load.sh" || log "h2load ceiling failed or invalid"
  else
    log "h2load not installed (apt-get install nghttp2-client): no cross-check of the no-op ceiling"
  fi

  log "ceiling: Postgres via bare sqlx"
  fresh_db reference
  for b in 100 1000; do
    for rep in $(reps); do
      "$LG" pg-ceiling --database-url "$DBURL" --users "$USERS" --duration "$DUR" --batch $b --writers 2 --readers 4 \
        --repeat "$rep" --out "$RESULTS" > /dev/null
    done
  done
}

start_handler() { # ack_mode [log-name suffix]
  port_free $HPORT
  env DATABASE_URL="$DBURL" AB_NAMESPACE=bench GRPC_PORT=$HPORT METRICS_PORT=$HMPORT \
    CONFIG_PATH="$FIXTURE" CHALLENGE_CONFIG_PATH="$FIXTURE" ACK_MODE="$1" LOG_LEVEL=warn \
    BUFFER_FLUSH_INTERVAL_MS=${BUFFER_FLUSH_INTERVAL_MS:-100} BUFFER_MAX_SIZE=${BUFFER_MAX_SIZE:-10000} \
    FLUSH_WORKERS=${FLUSH_WORKERS:-4} \
    timeout 1800 ${HANDLER_WRAP:-} "$HANDLER" > "$OUT/handler-$1${2:-}.log" 2>&1 &
  HANDLER_PID=$(child_of $!)
  wait_port 127.0.0.1:$HPORT
  # WARMUP (s, default 0): let the handler pass its start-up window first (for 5 s after a
  # start every event is looked up in the event ledger: crash-safe de-duplication).
  sleep "${WARMUP:-0}"
}

start_service() { # [log-name suffix]
  port_free $SPORT
  env DATABASE_URL="$DBURL" AB_NAMESPACE=bench GRPC_PORT=$SGPORT HTTP_PORT=$SPORT METRICS_PORT=$SMPORT \
    CHALLENGE_CONFIG_PATH="$FIXTURE" CONFIG_PATH="$FIXTURE" PLUGIN_GRPC_SERVER_AUTH_ENABLED=false \
    REWARD_CLIENT_MODE=mock LOG_LEVEL=warn \
    timeout 1800 "$SERVICE" > "$OUT/service${1:-}.log" 2>&1 &
  SERVICE_PID=$(child_of $!)
  wait_port 127.0.0.1:$SPORT
}

# Postgres's side of a run: CPU ticks of every postgres process (backends, WAL writer,
# checkpointer, autovacuum) and the WAL position. pg_mark before, pg_cost after; pg_cost
# appends {"kind":"pg_cost",scenario,ok,pg_cpu_us_per_event,wal_bytes_per_event} to results.
pg_ticks() { local t=0 f; for f in $(pgrep -x postgres); do
  t=$((t + $(awk '{print $14 + $15}' "/proc/$f/stat" 2>/dev/null || echo 0))); done; echo "$t"; }
pg_mark() { PG_T0=$(pg_ticks); PG_L0=$(psql "$PG/postgres" -tAc "select pg_current_wal_lsn()"); }
pg_cost() { # label repeat json-of-the-run
  local t1 ok wal hz; t1=$(pg_ticks); hz=$(getconf CLK_TCK)
  wal=$(psql "$PG/postgres" -tAc "select pg_wal_lsn_diff(pg_current_wal_lsn(), '$PG_L0')")
  ok=$(jq '.result.ok // 0' "$3" 2>/dev/null || echo 0)
  [ "${ok:-0}" -gt 0 ] 2>/dev/null || return 0
  jq -cn --arg s "$1" --argjson r "$2" --argjson ok "$ok" \
    --argjson cpu "$(awk -v a="$PG_T0" -v b="$t1" -v hz="$hz" -v n="$ok" 'BEGIN { printf "%.1f", (b - a) * 1e6 / hz / n }')" \
    --argjson wal "$(awk -v w="$wal" -v n="$ok" 'BEGIN { printf "%.0f", w / n }')" \
    '{kind:"pg_cost",scenario:$s,repeat:$r,ok:$ok,pg_cpu_us_per_event:$cpu,wal_bytes_per_event:$wal}' | tee -a "$RESULTS" >&2
}

s2() {
  for mode in ${MODES:-buffered durable}; do
    for eps in ${EPS_LIST:-2000 5000 10000 20000}; do
      for rep in $(reps); do
        local label="S2 events ACK_MODE=$mode ${eps}/s$LSFX" tag="-$LAYOUT-$eps$(rsfx $rep)"
        fresh_db
        start_handler $mode "$tag"
        log "$label for ${DUR}s (repeat $rep/$REPEAT)"
        pg_mark
        "$LG" events --grpc 127.0.0.1:$HPORT --rate "$eps" --duration "$DUR" --users "$USERS" --max-in-flight 500 \
          --layout "$LAYOUT" --database-url "$DBURL" --label "$label" --pids "handler=$HANDLER_PID" --repeat "$rep" \
          --out "$RESULTS" > "$OUT/s2-$mode$tag.json" || log "$label: run failed or invalid (see json)"
        pg_cost "$label" "$rep" "$OUT/s2-$mode$tag.json"
        log "handler $mode $eps: $(peak_rss $HANDLER_PID)"
        stop $HANDLER_PID handler "$label" "$rep"
      done
    done
  done
}

# Idle live progress streams (issue 21): the service's resident memory before and after
# STREAMS streams (one player each, heartbeat 15 s), held HOLD (20) seconds. The service
# gets the file-descriptor limit it needs.
streams_bench() {
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
  ulimit -n "$(ulimit -Hn)"
  start_service "-streams"
  log "streams: ${STREAMS:-10000} idle SSE streams, held ${HOLD:-20}s"
  python3 "$ROOT/bench/streams.py" --url "$API" --pid "$SERVICE_PID" --n "${STREAMS:-10000}" \
    --hold "${HOLD:-20}" | tee -a "$RESULTS" >&2 || log "streams: some streams failed (see results)"
  log "service: $(peak_rss $SERVICE_PID)"
  stop $SERVICE_PID service "streams"
}

s1() {
  fresh_db
  start_service
  # Claims go to consecutive (user, goal) pairs from --claim-offset (USERS × 50 pairs in all);
  # each run starts past the pairs earlier runs could have claimed (a 10 % share of its
  # requests, doubled for margin), so no run re-claims a goal and a 409 is a real error.
  local claim_off=0
  for rps in ${RPS_LIST:-300 1000 3000}; do
    for rep in $(reps); do
      log "S1 api $rps/s (repeat $rep/$REPEAT)"
      "$LG" api --base-url "$API" --rate "$rps" --duration "$DUR" --users "$USERS" --database-url "$DBURL" \
        --claim-offset "$claim_off" --claimed-before "$(psql "$DBURL" -tAc 'select count(*) from user_goal_progress where claimed_at is not null')" \
        --label "S1 api ${rps}/s" --pids "service=$SERVICE_PID" --repeat "$rep" --out "$RESULTS" \
        > "$OUT/s1-$rps$(rsfx $rep).json" || log "S1 $rps failed"
      claim_off=$((claim_off + rps * DUR / 5))
    done
  done
  # The 500-goal list alone, far above capacity: its throughput vs the ceilings.
  for rep in $(reps); do
    "$LG" http --url "$API/v1/challenges" --closed 64 --duration "$DUR" --users "$USERS" \
      --label "GET list (500 goals) max throughput, 64 in flight" --pids "service=$SERVICE_PID" --repeat "$rep" \
      --out "$RESULTS" > /dev/null
  done
  log "service: $(peak_rss $SERVICE_PID)"
  stop $SERVICE_PID service "S1 api"
}

# The 500-goal list alone (CONTRACT §8): the Postgres 500-row read ceiling, then each build in
# LIST_BINS (default: SERVICE_BIN) serving each query of LIST_QUERIES ("-" = no parameters),
# closed loop at 64 in flight, the builds alternated REPEAT times on one seeded database.
list_bench() {
  fresh_db
  local - rep bin q i
  set -f # the queries start with '?'
  for rep in $(reps); do
    "$LG" pg-ceiling --database-url "$DBURL" --users "$USERS" --duration "$DUR" --batch 100 --writers 2 --readers 4 \
      --repeat "$rep" --out "$RESULTS" > /dev/null
  done
  for rep in $(reps); do
    i=0
    for bin in ${LIST_BINS:-$SERVICE}; do
      i=$((i + 1))
      SERVICE=$bin start_service "-list-b$i$(rsfx $rep)"
      for q in ${LIST_QUERIES:-- ?pageSize=20}; do
        [ "$q" = - ] && q=
        log "list b$i ($bin) ${q:-(no parameters)} (repeat $rep/$REPEAT)"
        "$LG" http --url "$API/v1/challenges$q" --closed 64 --duration "$DUR" --users "$USERS" \
          --label "GET list${q:+ $q} (500 goals) b$i, 64 in flight" --pids "service=$SERVICE_PID" --repeat "$rep" \
          --out "$RESULTS" > /dev/null
      done
      stop $SERVICE_PID service "list b$i" "$rep"
    done
  done
}

init_ramp() {
  fresh_db
  start_service
  for rep in $(reps); do
    # Each repeat initializes its own fresh users (the ramp's default 7,500 fit in 100,000).
    "$LG" init-ramp --base-url "$API" --stages "${INIT_STAGES:-10:50,10:100,10:200,10:400}" --database-url "$DBURL" \
      --user-offset $((1000000 + (rep - 1) * 100000)) --repeat "$rep" \
      --label "initialize ramp (fresh users)" --pids "service=$SERVICE_PID" --out "$RESULTS" \
      > "$OUT/init$(rsfx $rep).json" || log "init ramp failed"
  done
  stop $SERVICE_PID service "initialize ramp (fresh users)"
}

s3() {
  local label="S3 combined ${RPS:-3000} RPS + ${EPS:-5000} EPS"
  for rep in $(reps); do
    fresh_db
    start_service "$(rsfx $rep)"
    start_handler "${ACK_MODE:-durable}" "-s3$(rsfx $rep)"
    log "$label (repeat $rep/$REPEAT)"
    "$LG" combined --base-url "$API" --rate "${RPS:-3000}" --eps "${EPS:-5000}" --duration "$DUR" --users "$USERS" \
      --grpc 127.0.0.1:$HPORT --database-url "$DBURL" --label "$label" --repeat "$rep" \
      --pids "service=$SERVICE_PID,handler=$HANDLER_PID" --out "$RESULTS" > "$OUT/s3$(rsfx $rep).json" || log "S3 failed or invalid"
    log "service: $(peak_rss $SERVICE_PID) handler: $(peak_rss $HANDLER_PID)"
    stop $SERVICE_PID service "$label" "$rep"; stop $HANDLER_PID handler "$label" "$rep"
  done
}

s4() {
  local label="S4 sessions ${SESSIONS:-50}/s"
  for rep in $(reps); do
    fresh_db
    start_service "$(rsfx $rep)"
    start_handler "${ACK_MODE:-durable}" "-s4$(rsfx $rep)"
    "$LG" sessions --base-url "$API" --rate "${SESSIONS:-50}" --duration "$DUR" --users "$USERS" --grpc 127.0.0.1:$HPORT \
      --database-url "$DBURL" --label "$label" --repeat "$rep" \
      --pids "service=$SERVICE_PID,handler=$HANDLER_PID" --out "$RESULTS" > "$OUT/s4$(rsfx $rep).json" || log "S4 failed or invalid"
    stop $SERVICE_PID service "$label" "$rep"; stop $HANDLER_PID handler "$label" "$rep"
  done
}

# The reference suite's own scenario 2, unmodified, from a temp dir laid out so that its
# relative proto path resolves to our vendored protos. Its 10 min duration is cut short with
# SIGINT (k6 still prints its summary), so the script's executor is not changed.
k6_check() {
  local ref=/work/.mirror/AccelByte+extend-challenge-suite/repo
  local tmp; tmp=$(mktemp -d /tmp/k6-ref.XXXX)
  mkdir -p "$tmp/tests/loadtest/k6" "$tmp/tests/loadtest/fixtures" "$tmp/tests/extend-challenge-event-handler/pkg"
  git -C "$ref" show HEAD:tests/loadtest/k6/scenario2_event_load.js > "$tmp/tests/loadtest/k6/scenario2_event_load.js"
  git -C "$ref" show HEAD:tests/loadtest/fixtures/users.json > "$tmp/tests/loadtest/fixtures/users.json"
  cp -r "$ROOT/extend-challenge-common/proto" "$tmp/tests/extend-challenge-event-handler/pkg/proto"
  fresh_db
  start_handler "${ACK_MODE:-durable}"
  log "k6 reference scenario2 at ${K6_EPS:-1000} EPS for ${K6_SECS:-240}s (namespace bench)"
  (cd "$tmp/tests/loadtest/k6" && EVENT_HANDLER_ADDR=127.0.0.1:$HPORT TARGET_EPS=${K6_EPS:-1000} NAMESPACE=bench \
    timeout -s INT "${K6_SECS:-240}" k6 run --no-usage-report scenario2_event_load.js) > "$OUT/k6-scenario2.txt" 2>&1 || true
  tail -n 40 "$OUT/k6-scenario2.txt" >&2
  psql "$DBURL" -tAc "select 'k6 users with rows: '||count(distinct user_id)||', their rows: '||count(*)||', with progress > 0: '||count(*) filter (where progress > 0)||', namespaces: '||string_agg(distinct namespace, ',') from user_goal_progress where user_id like 'user-%'" | tee -a "$OUT/run.log"
  stop $HANDLER_PID handler "k6 reference scenario2 ${K6_EPS:-1000} EPS ACK_MODE=${ACK_MODE:-durable}"
  rm -rf "$tmp"
}

# Where the handler's own CPU goes at a sustainable rate (perf from Debian's linux-perf).
profile_handler() {
  fresh_db
  start_handler "${ACK_MODE:-buffered}"
  "$LG" events --grpc 127.0.0.1:$HPORT --rate "${PROFILE_EPS:-250}" --duration 25 --users "$USERS" \
    --layout "$LAYOUT" --database-url "$DBURL" --label "profile run ${PROFILE_EPS:-250}/s$LSFX" --pids "handler=$HANDLER_PID" \
    --out "$RESULTS" > "$OUT/profile-run.json" &
  local lg=$!
  sleep 5
  perf record -F 499 -g -p "$HANDLER_PID" -o "$OUT/perf.data" -- sleep 15 2> "$OUT/perf-record.log" || true
  wait $lg || log "profile run invalid (see json)"
  perf report -i "$OUT/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' |
    grep -E '^ +[0-9]' | head -40 > "$OUT/perf-top.txt" || true
  cat "$OUT/perf-top.txt" >&2
  stop $HANDLER_PID handler "profile run ${PROFILE_EPS:-250}/s$LSFX"
}

# Issue 22 part 1: where the durable path's tail goes at EPS (5000) events/s, with real
# instruments, in one run:
# - Postgres: pg_stat_statements (per statement: calls, mean and max time), the statements
#   over 25 ms, lock waits over 5 ms (log_lock_waits, deadlock_timeout), checkpoints and
#   autovacuum from its log, pg_stat_wal and pg_stat_bgwriter deltas. Needs a restart of the
#   cluster to preload pg_stat_statements; the settings are reset (and the cluster restarted)
#   at the end.
# - the handler: challenge_flush_phase_seconds (each batch's time split by round trip).
# - the scheduler: run-queue wait (/proc/*/schedstat) of the handler's threads, of every
#   Postgres process and of the load generator, against their CPU time; and, when perf is
#   there, `perf sched latency` over SCHED_SECS (5; 0: none) seconds in the middle of the run
#   (it traces every context switch: the run's own latency is worse while it records).
# PIN_LG=1 runs the load generator alone on CPU 1 and the handler and Postgres on CPU 0.
PG_TAIL_SETTINGS="log_min_duration_statement=25 log_lock_waits=on deadlock_timeout=5ms log_checkpoints=on log_autovacuum_min_duration=0 track_io_timing=on track_wal_io_timing=on"
# The restarted server must not inherit this script's open files: under `flock`, it would
# hold the lock for as long as it runs.
pg_restart() { bash -c 'for fd in /proc/$$/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done
    exec pg_ctlcluster 15 main restart'; for _ in $(seq 100); do psql "$PG/postgres" -qtAc 'select 1' >/dev/null 2>&1 && return; sleep 0.2; done; }
pg_instruments() { # on | off
  local kv
  if [ "$1" = on ]; then
    psql "$PG/postgres" -qc "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"
    for kv in $PG_TAIL_SETTINGS; do psql "$PG/postgres" -qc "ALTER SYSTEM SET ${kv%%=*} = '${kv#*=}'"; done
  else
    psql "$PG/postgres" -qc "ALTER SYSTEM RESET shared_preload_libraries"
    for kv in $PG_TAIL_SETTINGS; do psql "$PG/postgres" -qc "ALTER SYSTEM RESET ${kv%%=*}"; done
  fi
  pg_restart
}
# Sum of (CPU ns, run-queue wait ns) over the threads of the given pids.
sched_sum() { local p t; for p in "$@"; do for t in /proc/$p/task/*/schedstat; do cat "$t" 2>/dev/null; done; done |
  awk '{c += $1; w += $2} END {printf "%d %d\n", c, w}'; }
sched_line() { # label "before" "after"
  awk -v l="$1" -v a="$2" -v b="$3" 'BEGIN { split(a, x, " "); split(b, y, " ");
    c = (y[1] - x[1]) / 1e9; w = (y[2] - x[2]) / 1e9;
    printf "%-10s CPU %7.1f s, waiting for a CPU %7.1f s (%.0f ms per CPU second)\n", l, c, w, (c > 0 ? w * 1000 / c : 0) }'; }
tail_bench() {
  local eps=${EPS:-5000} pgl=/var/log/postgresql/postgresql-15-main.log
  local pin_lg=() pin_pair=()
  [ "${PIN_LG:-0}" = 1 ] && pin_lg=(taskset -c 1) pin_pair=(taskset -c 0)
  trap 'pg_instruments off || true; for p in $(pgrep -x postgres); do taskset -pc 0-1 $p >/dev/null 2>&1 || true; done' EXIT
  pg_instruments on
  fresh_db
  psql "$DBURL" -qc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
  HANDLER_WRAP="${pin_pair[*]:-}" start_handler durable "-tail-$eps"
  [ "${PIN_LG:-0}" = 1 ] && for p in $(pgrep -x postgres); do taskset -pc 0 $p >/dev/null 2>&1 || true; done
  local label="tail: durable ${eps}/s$LSFX${PIN_LG:+ PIN_LG=$PIN_LG}"
  psql "$DBURL" -qtAc "select pg_stat_statements_reset(); select pg_stat_reset_shared('wal'); select pg_stat_reset_shared('bgwriter')" >/dev/null
  local log0; log0=$(stat -c %s "$pgl" 2>/dev/null || echo 0)
  local pgp; pgp=$(pgrep -x postgres | tr '\n' ' ')
  local h0 p0; h0=$(sched_sum $HANDLER_PID); p0=$(sched_sum $pgp)
  log "$label for ${DUR}s"
  "${pin_lg[@]}" "$LG" events --grpc 127.0.0.1:$HPORT --rate "$eps" --duration "$DUR" --users "$USERS" --max-in-flight 500 \
    --layout "$LAYOUT" --database-url "$DBURL" --label "$label" --pids "handler=$HANDLER_PID" \
    --out "$RESULTS" > "$OUT/tail-$eps.json" &
  local lg=$! l0; sleep 0.5; l0=$(sched_sum $lg)
  if [ "${SCHED_SECS:-5}" -gt 0 ] && command -v perf >/dev/null; then
    sleep $(( DUR / 2 - ${SCHED_SECS:-5} / 2 ))
    perf sched record -a -o "$OUT/sched.data" -- sleep "${SCHED_SECS:-5}" > "$OUT/perf-sched-record.log" 2>&1 || true
  fi
  local l1; l1=$(sched_sum $lg)
  wait $lg || log "$label: run failed or invalid (see json)"
  local h1 p1; h1=$(sched_sum $HANDLER_PID); p1=$(sched_sum $pgp)
  {
    set +e  # a report line that finds nothing must not end the run
    echo "== $label"
    jq -r '.result | "ok/s \(.achieved_ok_per_sec | floor), errors \(.errors)  p50 \(.all.p50_ms) p95 \(.all.p95_ms) p99 \(.all.p99_ms) max \(.all.max_ms) ms"' "$OUT/tail-$eps.json" 2>/dev/null || true
    echo "-- scheduler (schedstat; load generator from 0.5 s in until the perf window ends)"
    sched_line handler "$h0" "$h1"; sched_line postgres "$p0" "$p1"; sched_line loadgen "$l0" "$l1"
    echo "-- the handler's batches, by phase (count, mean ms, share over 25 ms)"
    curl -s "127.0.0.1:$HMPORT/metrics" | awk '
      /^challenge_flush_phase_seconds_(sum|count)/ { match($0, /phase="[a-z_]+"/); ph = substr($0, RSTART + 7, RLENGTH - 8);
        if ($0 ~ /_sum/) sum[ph] = $2; else cnt[ph] = $2 }
      /^challenge_flush_phase_seconds_bucket/ && /le="0.025"/ { match($0, /phase="[a-z_]+"/); ph = substr($0, RSTART + 7, RLENGTH - 8); le25[ph] = $2 }
      /^challenge_flush_duration_seconds_bucket\{.*result="ok"/ && /le="0.025"/ { d25 = $2 }
      /^challenge_flush_duration_seconds_count\{result="ok"/ { dc = $2 } /^challenge_flush_duration_seconds_sum\{result="ok"/ { ds = $2 }
      END { for (p in cnt) printf "%-14s %8d batches, mean %6.2f ms, over 25 ms %5.2f %%\n", p, cnt[p], sum[p] * 1000 / cnt[p], (cnt[p] - le25[p]) * 100 / cnt[p];
        if (dc) printf "%-14s %8d batches, mean %6.2f ms, over 25 ms %5.2f %%\n", "whole batch", dc, ds * 1000 / dc, (dc - d25) * 100 / dc }'
    echo "-- pg_stat_statements (top by total time)"
    psql "$DBURL" -P pager=off -c "select calls, round(total_exec_time::numeric, 0) as total_ms, round(mean_exec_time::numeric, 2) as mean_ms,
        round(max_exec_time::numeric, 1) as max_ms, round(stddev_exec_time::numeric, 2) as sd_ms, left(regexp_replace(query, '\s+', ' ', 'g'), 70) as query
      from pg_stat_statements where dbid = (select oid from pg_database where datname = current_database())
      order by total_exec_time desc limit 12"
    echo "-- WAL and checkpoints"
    psql "$DBURL" -P pager=off -c "select wal_records, wal_fpi, pg_size_pretty(wal_bytes) as wal, wal_buffers_full, wal_write, wal_sync,
        round(wal_write_time::numeric, 0) as write_ms, round(wal_sync_time::numeric, 0) as sync_ms from pg_stat_wal" \
      -c "select checkpoints_timed, checkpoints_req, round(checkpoint_write_time::numeric, 0) as cp_write_ms, buffers_backend, buffers_backend_fsync from pg_stat_bgwriter"
    echo "-- Postgres log during the run: slow statements (>25 ms), lock waits (>5 ms), checkpoints, autovacuum"
    tail -c +$((log0 + 1)) "$pgl" 2>/dev/null > "$OUT/pg-tail.log" || true
    printf "slow statements %s, lock waits %s, checkpoints %s, autovacuum/analyze %s\n" \
      "$(grep -c 'duration:' "$OUT/pg-tail.log")" "$(grep -c 'still waiting for' "$OUT/pg-tail.log")" \
      "$(grep -c 'checkpoint complete' "$OUT/pg-tail.log")" "$(grep -c 'automatic \(vacuum\|analyze\)' "$OUT/pg-tail.log")"
    grep 'still waiting for' "$OUT/pg-tail.log" | sed 's/.*still waiting for/waiting for/; s/ after .*//' | sort | uniq -c | sort -rn | head -5
    grep 'duration:' "$OUT/pg-tail.log" | sed -E 's/.*duration: ([0-9.]+) ms +(statement|execute [^:]*): (.{0,60}).*/\3/' | sort | uniq -c | sort -rn | head -8
    if [ -s "$OUT/sched.data" ]; then
      echo "-- perf sched latency over ${SCHED_SECS:-5} s (worst scheduling delays)"
      perf sched latency -i "$OUT/sched.data" --sort max 2>/dev/null | grep -E 'Task|postgres|challenge|extend|loadgen|tokio' | head -16
    fi
  } 2>&1 | tee "$OUT/tail-$eps.txt" >&2
  stop $HANDLER_PID handler "$label"
  pg_instruments off
  trap - EXIT
}

machine
case "${1:-all}" in
  build) build ;;
  ceilings) ceilings ;;
  s1) s1 ;;
  s2) s2 ;;
  s3) s3 ;;
  s4) s4 ;;
  init) init_ramp ;;
  list) list_bench ;;
  k6) k6_check ;;
  profile) profile_handler ;;
  streams) streams_bench ;;
  tail) tail_bench ;;
  all) build; ceilings; s2; s1; init_ramp; s3; s4; k6_check ;;
  *) echo "usage: $0 [build|ceilings|s1|s2|s3|s4|init|k6|streams|tail|all]" >&2; exit 2 ;;
esac
drop_db
log "results: $RESULTS"
