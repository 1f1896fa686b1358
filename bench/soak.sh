#!/usr/bin/env bash
# Soak (issue 10): SOAK_MIN minutes (30) of sustainable mixed load on both binaries, the
# table growing all along, read minute by minute.
#
#   bench/soak.sh            # after `bench/run.sh build`
#
# Each minute is one `loadgen combined` run (player API at RPS, events at EPS through the
# durable event handler, every event checked exactly) beside a `loadgen init-ramp` that
# initializes INIT_PER_SEC new players (500 rows each: the table grows by ~INIT_PER_SEC × 30 k
# rows a minute). After each minute one line goes to $OUT/soak.jsonl: the minute's p50/p95/p99
# (API and events), ok/s, validity, the progress table's live and dead tuples, heap and index
# sizes, HOT-update share, and the autovacuum/autoanalyze counts so far.
#
# Knobs (env): SOAK_MIN (30), RPS (200), EPS (100: an event of the reference layout writes ~90 rows), INIT_PER_SEC (2), USERS (10000),
# BENCH_DB (bench_soak), OUT, DB_PARTITIONS (seed with migration 0012's hash partitions by user).
# Same binaries as bench/run.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LG="$ROOT/target/release/loadgen"
HANDLER=${HANDLER_BIN:-$ROOT/target/release/extend-challenge-event-handler}
SERVICE=${SERVICE_BIN:-$ROOT/target/release/extend-challenge-service}
DB=${BENCH_DB:-bench_soak}
PG=postgres://postgres@127.0.0.1:5432
DBURL="$PG/$DB"
# Ports of their own (17xxx), so a soak can run beside bench/run.sh or a test suite.
API="http://127.0.0.1:17000/challenge"
FIXTURE="$ROOT/bench/fixtures/challenges.json"
SOAK_MIN=${SOAK_MIN:-30}
RPS=${RPS:-200}
EPS=${EPS:-100}
INIT_PER_SEC=${INIT_PER_SEC:-2}
USERS=${USERS:-10000}
OUT=${OUT:-$ROOT/target/bench-results/soak-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/run.log" >&2; }

wait_port() {
  for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  log "nothing listening on $1"; exit 1
}
child_of() { local c; for _ in $(seq 1 50); do c=$(pgrep -P "$1" | head -n1) && [ -n "$c" ] && { echo "$c"; return; }; sleep 0.1; done; echo "$1"; }

for p in 17565 17566 17000 17081 17082; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then log "port $p in use; stop that process first"; exit 1; fi
done

{
  echo "date: $(date -u +%FT%TZ)"; echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  psql "$PG/postgres" -tAc "select string_agg(name||'='||setting, ' ') from pg_settings where name like 'autovacuum%' or name in ('shared_buffers','synchronous_commit','max_wal_size')"
} > "$OUT/machine.txt"

# Autovacuum is what a soak is about: a server with it off (some development set-ups) gets it
# on for the run (ALTER SYSTEM + reload; the setting is put back on exit).
if [ "$(psql "$PG/postgres" -tAc 'show autovacuum')" = off ]; then
  log "autovacuum is off on this server: turning it on for the soak"
  psql "$PG/postgres" -qc "ALTER SYSTEM SET autovacuum = on" -c "SELECT pg_reload_conf()" > /dev/null
  trap 'psql "$PG/postgres" -qc "ALTER SYSTEM RESET autovacuum" -c "SELECT pg_reload_conf()" > /dev/null' EXIT
fi
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
"$LG" seed --database-url "$DBURL" --users "$USERS" --challenges-per-user 10 | tee -a "$OUT/run.log"

env DATABASE_URL="$DBURL" AB_NAMESPACE=bench GRPC_PORT=17565 METRICS_PORT=17081 CONFIG_PATH="$FIXTURE" \
  CHALLENGE_CONFIG_PATH="$FIXTURE" ACK_MODE=durable LOG_LEVEL=warn \
  timeout $((SOAK_MIN * 60 + 600)) "$HANDLER" > "$OUT/handler.log" 2>&1 &
HPID=$(child_of $!)
env DATABASE_URL="$DBURL" AB_NAMESPACE=bench GRPC_PORT=17566 HTTP_PORT=17000 METRICS_PORT=17082 \
  CHALLENGE_CONFIG_PATH="$FIXTURE" CONFIG_PATH="$FIXTURE" PLUGIN_GRPC_SERVER_AUTH_ENABLED=false \
  REWARD_CLIENT_MODE=mock LOG_LEVEL=warn \
  timeout $((SOAK_MIN * 60 + 600)) "$SERVICE" > "$OUT/service.log" 2>&1 &
SPID=$(child_of $!)
trap 'kill -TERM $HPID $SPID 2>/dev/null || true; psql "$PG/postgres" -qc "ALTER SYSTEM RESET autovacuum" -c "SELECT pg_reload_conf()" > /dev/null' EXIT
wait_port 17565; wait_port 17000
for p in $HPID $SPID; do kill -0 "$p" 2>/dev/null || { log "a server did not start (see $OUT/*.log)"; exit 1; }; done
sleep 6 # past the handler's start-up ledger window

table_stats() { # summed over the partitions when the table is partitioned (migration 0012)
  psql "$DBURL" -tAc "select json_build_object(
    'live', sum(n_live_tup), 'dead', sum(n_dead_tup), 'updates', sum(n_tup_upd), 'hot_updates', sum(n_tup_hot_upd),
    'autovacuums', sum(autovacuum_count), 'autoanalyzes', sum(autoanalyze_count),
    'last_autovacuum', max(last_autovacuum),
    'heap_mib', round(sum(pg_relation_size(relid)) / 1048576.0, 1),
    'index_mib', round(sum(pg_indexes_size(relid)) / 1048576.0, 1),
    'ledger_rows', (select count(*) from event_ledger))
    from pg_stat_user_tables
    where relid in (select relid from pg_partition_tree('user_goal_progress') where isleaf)"
}

claim_off=0
for m in $(seq 1 "$SOAK_MIN"); do
  claimed=$(psql "$DBURL" -tAc 'select count(*) from user_goal_progress where claimed_at is not null')
  "$LG" init-ramp --base-url "$API" --stages "60:$INIT_PER_SEC" --database-url "$DBURL" \
    --user-offset $((2000000 + m * 1000)) --label "soak minute $m: initialize new players" \
    --out "$OUT/init.jsonl" > "$OUT/init-$m.json" 2>>"$OUT/run.log" &
  ip=$!
  "$LG" combined --base-url "$API" --rate "$RPS" --eps "$EPS" --duration 60 --users "$USERS" \
    --grpc 127.0.0.1:17565 --database-url "$DBURL" --claim-offset "$claim_off" --claimed-before "$claimed" \
    --seed "$m" --baseline true --label "soak minute $m" --pids "service=$SPID,handler=$HPID" --out "$OUT/combined.jsonl" \
    > "$OUT/minute-$m.json" 2>>"$OUT/run.log" || log "minute $m: run failed or invalid (see minute-$m.json)"
  wait $ip || log "minute $m: initialize run failed"
  claim_off=$((claim_off + RPS * 60 / 5))
  jq -c --argjson m "$m" --argjson t "$(table_stats)" --arg load "$(cut -d' ' -f1 /proc/loadavg)" \
    '{minute:$m, load:$load, api_ok_s:.result.achieved_ok_per_sec, api_p50:.result.all.p50_ms,
      api_p95:.result.all.p95_ms, api_p99:.result.all.p99_ms, ev_ok_s:.events.achieved_ok_per_sec,
      ev_p50:.events.all.p50_ms, ev_p99:.events.all.p99_ms, errors:(.result.errors + .events.errors),
      valid:.validity.valid, table:$t}' "$OUT/minute-$m.json" | tee -a "$OUT/soak.jsonl"
done
log "soak done: $OUT/soak.jsonl"
