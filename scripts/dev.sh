#!/usr/bin/env bash
# The one command to run the pair locally:
#   scripts/dev.sh
# Builds both binaries, makes sure Postgres is there (starting a throwaway cluster under
# target/dev-pg/ when none answers and initdb/pg_ctl are installed), creates the database
# if missing, starts the event handler and the service with local defaults (auth off,
# mock rewards), prints the URLs and example calls (curl, grpcurl, challenge-demo), and
# follows their logs. Ctrl-C stops everything it started.
#
# Settings (environment; defaults in brackets):
#   DB_HOST [127.0.0.1]  DB_PORT [5432]  DB_USER [postgres]  DB_PASSWORD [postgres]  DB_NAME [challenge_db]
#   REDIS_HOST / REDIS_PORT   use this Redis; no REDIS_HOST: 127.0.0.1:${REDIS_PORT:-6379} if
#                             it answers, else a throwaway redis-server if installed, else
#                             none (Redis is optional)
#   DEV_REDIS=off             never use Redis
#   AB_NAMESPACE [mygame]  CHALLENGE_CONFIG_PATH [config/challenges.json]  LOG_LEVEL [info]
#   SERVICE_GRPC_PORT [6565]  SERVICE_HTTP_PORT [8000]  SERVICE_METRICS_PORT [8080]
#   HANDLER_GRPC_PORT [6566]  HANDLER_METRICS_PORT [8081]
#   DEV_FOLLOW_LOGS [1]       0: do not print the binaries' logs here (they stay in target/dev-logs/)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DB_HOST=${DB_HOST:-127.0.0.1}
DB_PORT=${DB_PORT:-5432}
DB_USER=${DB_USER:-postgres}
# The password docker-compose.yml gives its Postgres; ignored by a trust-auth server.
DB_PASSWORD=${DB_PASSWORD-postgres}
DB_NAME=${DB_NAME:-challenge_db}
AB_NAMESPACE=${AB_NAMESPACE:-mygame}
CONFIG=${CHALLENGE_CONFIG_PATH:-config/challenges.json}
LOG_LEVEL=${LOG_LEVEL:-info}
SERVICE_GRPC_PORT=${SERVICE_GRPC_PORT:-6565}
SERVICE_HTTP_PORT=${SERVICE_HTTP_PORT:-8000}
SERVICE_METRICS_PORT=${SERVICE_METRICS_PORT:-8080}
HANDLER_GRPC_PORT=${HANDLER_GRPC_PORT:-6566}
HANDLER_METRICS_PORT=${HANDLER_METRICS_PORT:-8081}
DEV_FOLLOW_LOGS=${DEV_FOLLOW_LOGS:-1}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
LOG_DIR=$TARGET_DIR/dev-logs

say() { echo "dev: $*"; }
die() { echo "dev: error: $*" >&2; exit 1; }

# Everything started here, stopped by cleanup() in reverse order.
SERVICE_PID="" HANDLER_PID="" TAIL_PID="" REDIS_PID="" PG_DATA="" PG_BIN="" PG_RUN_AS=""

# shellcheck disable=SC2317  # invoked through the EXIT trap
cleanup() {
    local code=$?
    trap - INT TERM EXIT
    # Finish the clean-up even if the terminal (or a pipe we print to) is gone.
    set +e
    trap '' PIPE INT
    echo
    say "stopping..."
    local pid
    for pid in $SERVICE_PID $HANDLER_PID; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $SERVICE_PID $HANDLER_PID; do
        # Orderly shutdown flushes buffered progress; give it 15 s.
        for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    [[ -n "$TAIL_PID" ]] && { kill "$TAIL_PID" 2>/dev/null || true; wait "$TAIL_PID" 2>/dev/null || true; }
    if [[ -n "$REDIS_PID" ]]; then
        kill -TERM "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
        rm -rf "$TARGET_DIR/dev-redis"
        say "stopped the throwaway Redis"
    fi
    if [[ -n "$PG_DATA" ]]; then
        as_pg_user "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 || true
        rm -rf "$(dirname "$PG_DATA")"
        say "stopped and removed the throwaway Postgres cluster"
    fi
    say "stopped"
    exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Is something listening on host:port?
listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

free_port() {
    local p
    for p in $(seq "$1" $(($1 + 200))); do
        listening 127.0.0.1 "$p" || { echo "$p"; return; }
    done
    die "no free port from $1"
}

# initdb and pg_ctl refuse to run as root: run them as postgres (or nobody) then.
as_pg_user() {
    if [[ -n "$PG_RUN_AS" ]]; then
        runuser -u "$PG_RUN_AS" -- "$@"
    else
        "$@"
    fi
}

find_pg_bin() {
    local d
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(command -v initdb)"
        return
    fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [[ -x "$d/initdb" && -x "$d/pg_ctl" ]] && { echo "$d"; return; }
    done
    return 1
}

start_throwaway_postgres() {
    PG_BIN=$(find_pg_bin) || die "no Postgres answers at $DB_HOST:$DB_PORT and initdb/pg_ctl are not installed.
    Start one with:   docker compose up -d postgres
    or install it:    apt-get install postgresql   (then re-run; a throwaway cluster is used)
    or point DB_HOST/DB_PORT/DB_USER/DB_PASSWORD at yours."
    local dir="$TARGET_DIR/dev-pg"
    if [[ $EUID -eq 0 ]]; then
        PG_RUN_AS=$(id -u postgres >/dev/null 2>&1 && echo postgres || echo nobody)
        # That user must reach the directory; fall back to /tmp when target/ is private.
        if ! runuser -u "$PG_RUN_AS" -- test -x "$TARGET_DIR"; then
            dir=$(mktemp -d /tmp/dev-pg.XXXXXX)
        fi
    fi
    rm -rf "$dir" && mkdir -p "$dir"
    [[ -n "$PG_RUN_AS" ]] && chown "$PG_RUN_AS" "$dir"
    local port
    port=$(free_port 55432)
    say "no Postgres at $DB_HOST:$DB_PORT; starting a throwaway cluster ($PG_BIN) in $dir on port $port"
    as_pg_user "$PG_BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
        die "initdb failed: $(tail -5 "$dir/initdb.log")"
    PG_DATA="$dir/data"
    local as=()
    [[ -n "$PG_RUN_AS" ]] && as=(runuser -u "$PG_RUN_AS" --)
    # Own session, so Ctrl-C reaches only this script; cleanup() stops it.
    setsid --wait "${as[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$dir/postgres.log" -w -t 30 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null ||
        die "Postgres did not start: $(tail -5 "$dir/postgres.log")"
    DB_HOST=127.0.0.1 DB_PORT=$port DB_USER=postgres DB_PASSWORD=""
}

psql_bin() {
    command -v psql && return
    local bin=${PG_BIN:-$(find_pg_bin)} || return 1
    [[ -x "$bin/psql" ]] && echo "$bin/psql"
}

ensure_database() {
    local psql
    psql=$(psql_bin) || true
    if [[ -z "$psql" || ! -x "$psql" ]]; then
        say "psql not found: make sure database $DB_NAME exists on $DB_HOST:$DB_PORT"
        return
    fi
    local q=(env PGPASSWORD="$DB_PASSWORD" "$psql" -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" -d postgres -v ON_ERROR_STOP=1 -qtA)
    if [[ "$("${q[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != 1 ]]; then
        "${q[@]}" -c "CREATE DATABASE \"$DB_NAME\"" >/dev/null
        say "created database $DB_NAME"
    fi
}

setup_redis() {
    if [[ "${DEV_REDIS:-auto}" == off ]]; then
        unset REDIS_HOST REDIS_PORT
        return
    fi
    if [[ -n "${REDIS_HOST:-}" ]]; then
        REDIS_PORT=${REDIS_PORT:-6379}
        return
    fi
    if listening 127.0.0.1 "${REDIS_PORT:-6379}"; then
        REDIS_HOST=127.0.0.1 REDIS_PORT=${REDIS_PORT:-6379}
    elif command -v redis-server >/dev/null; then
        REDIS_PORT=$(free_port 56379)
        REDIS_HOST=127.0.0.1
        mkdir -p "$TARGET_DIR/dev-redis"
        setsid redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
            --dir "$TARGET_DIR/dev-redis" --logfile "$TARGET_DIR/dev-redis/redis.log" &
        REDIS_PID=$!
        for _ in $(seq 50); do listening 127.0.0.1 "$REDIS_PORT" && break; sleep 0.1; done
        say "started a throwaway Redis on port $REDIS_PORT"
    else
        say "no Redis (optional): duplicate events are de-duplicated in-process only"
        unset REDIS_HOST REDIS_PORT
    fi
}

wait_healthy() {
    local name=$1 pid=$2 port=$3 log=$4
    for _ in $(seq 600); do
        kill -0 "$pid" 2>/dev/null || { tail -30 "$log" >&2; die "$name exited during start-up (log: $log)"; }
        curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null && return
        sleep 0.1
    done
    tail -30 "$log" >&2
    die "$name did not report healthy on :$port/healthz within 60 s (log: $log)"
}

# ---------------------------------------------------------------------------------------
command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (https://rustup.rs)"
command -v curl >/dev/null || die "curl not found"
[[ -r "$CONFIG" ]] || die "challenge config $CONFIG not found (set CHALLENGE_CONFIG_PATH)"
for p in SERVICE_GRPC_PORT SERVICE_HTTP_PORT SERVICE_METRICS_PORT HANDLER_GRPC_PORT HANDLER_METRICS_PORT; do
    listening 127.0.0.1 "${!p}" && die "port ${!p} is in use (set $p to another port)"
done

say "building both binaries and challenge-demo (debug)..."
cargo build -q -p extend-challenge-service -p extend-challenge-event-handler -p extend-challenge-demo-app

if ! listening "$DB_HOST" "$DB_PORT"; then
    start_throwaway_postgres
fi
ensure_database
setup_redis

DATABASE_URL="postgres://$DB_USER${DB_PASSWORD:+:$DB_PASSWORD}@$DB_HOST:$DB_PORT/$DB_NAME"
common=(
    DATABASE_URL="$DATABASE_URL"
    AB_NAMESPACE="$AB_NAMESPACE"
    PLUGIN_GRPC_SERVER_AUTH_ENABLED=false
    REWARD_CLIENT_MODE=mock
    CHALLENGE_CONFIG_PATH="$CONFIG"
    LOG_LEVEL="$LOG_LEVEL"
)
[[ -n "${REDIS_HOST:-}" ]] && common+=(REDIS_HOST="$REDIS_HOST" REDIS_PORT="$REDIS_PORT")

mkdir -p "$LOG_DIR"
: >"$LOG_DIR/event-handler.log"
: >"$LOG_DIR/service.log"
# HTTP_PORT is unused by the handler, but must not collide with the service's.
env "${common[@]}" GRPC_PORT="$HANDLER_GRPC_PORT" HTTP_PORT=$((SERVICE_HTTP_PORT + 1)) \
    METRICS_PORT="$HANDLER_METRICS_PORT" "$TARGET_DIR/debug/extend-challenge-event-handler" \
    >>"$LOG_DIR/event-handler.log" 2>&1 &
HANDLER_PID=$!
env "${common[@]}" GRPC_PORT="$SERVICE_GRPC_PORT" HTTP_PORT="$SERVICE_HTTP_PORT" \
    METRICS_PORT="$SERVICE_METRICS_PORT" "$TARGET_DIR/debug/extend-challenge-service" \
    >>"$LOG_DIR/service.log" 2>&1 &
SERVICE_PID=$!
wait_healthy event-handler "$HANDLER_PID" "$HANDLER_METRICS_PORT" "$LOG_DIR/event-handler.log"
wait_healthy service "$SERVICE_PID" "$SERVICE_METRICS_PORT" "$LOG_DIR/service.log"

# A stat code from the config, for the example call.
STAT_CODE=$(python3 -c '
import json, sys
for c in json.load(open(sys.argv[1]))["challenges"]:
    for g in c["goals"]:
        if g.get("eventSource") == "statistic":
            print(g["requirement"]["statCode"]); sys.exit()
' "$CONFIG" 2>/dev/null || echo "<statCode>")
REST="http://localhost:$SERVICE_HTTP_PORT/challenge"
DEMO_BIN=$TARGET_DIR/debug/challenge-demo
[[ -x "$DEMO_BIN" ]] || DEMO_BIN="cargo run -q -p extend-challenge-demo-app --"
DEMO="${DEMO_BIN#"$ROOT"/} --backend-url=$REST --event-handler-url=localhost:$HANDLER_GRPC_PORT --namespace=$AB_NAMESPACE --user-id=player-1"
cat <<EOF

  Extend Challenge is running (auth disabled: the user is the x-mock-user-id header;
  rewards are mocked; namespace $AB_NAMESPACE; database $DB_HOST:$DB_PORT/$DB_NAME${REDIS_HOST:+; Redis $REDIS_HOST:$REDIS_PORT}).

  service         REST  $REST          gRPC  localhost:$SERVICE_GRPC_PORT
                  Swagger UI  $REST/apidocs/
                  http://localhost:$SERVICE_METRICS_PORT/metrics   http://localhost:$SERVICE_METRICS_PORT/healthz
  event handler   gRPC  localhost:$HANDLER_GRPC_PORT
                  http://localhost:$HANDLER_METRICS_PORT/metrics   http://localhost:$HANDLER_METRICS_PORT/healthz
  logs            ${LOG_DIR#"$ROOT"/}/service.log, ${LOG_DIR#"$ROOT"/}/event-handler.log

  Try it (grpcurl: 'scripts/test.sh --install-grpcurl' prints a path to one):
    curl -s -X POST -H 'x-mock-user-id: player-1' $REST/v1/challenges/initialize
    grpcurl -plaintext localhost:$HANDLER_GRPC_PORT list
    grpcurl -plaintext -d '{"id":"login-1","namespace":"$AB_NAMESPACE","userId":"player-1"}' \\
      localhost:$HANDLER_GRPC_PORT accelbyte.iam.account.v1.UserAuthenticationUserLoggedInService/OnMessage
    grpcurl -plaintext -d '{"id":"stat-1","namespace":"$AB_NAMESPACE","userId":"player-1","payload":{"statCode":"$STAT_CODE","latestValue":1,"inc":1}}' \\
      localhost:$HANDLER_GRPC_PORT accelbyte.social.statistic.v1.StatisticStatItemUpdatedService/OnMessage
    grpcurl -plaintext -d '{"id":"stat-2","namespace":"$AB_NAMESPACE","userId":"player-1","eventType":"statItemUpdated","payload":"{\\"statCode\\":\\"$STAT_CODE\\",\\"value\\":2}"}' \\
      localhost:$HANDLER_GRPC_PORT accelbyte.EventHandler/HandleEvent     # the deployment guide's envelope
    curl -s -H 'x-mock-user-id: player-1' '$REST/v1/challenges?active_only=true'
    grpcurl -plaintext -H 'x-mock-user-id: player-1' -d '{}' localhost:$SERVICE_GRPC_PORT service.Service/GetUserChallenges
    HANDLER_ADDR=localhost:$HANDLER_GRPC_PORT SERVICE_URL=$REST NAMESPACE=$AB_NAMESPACE scripts/smoke.sh

  Or with challenge-demo (the CLI and TUI; no subcommand starts the TUI):
    $DEMO initialize-player
    $DEMO trigger-event stat-update --stat-code=$STAT_CODE --value=1
    $DEMO list-challenges --format=table

  Ctrl-C stops everything.

EOF

if [[ "$DEV_FOLLOW_LOGS" == 1 ]]; then
    tail -n +1 -F "$LOG_DIR/event-handler.log" "$LOG_DIR/service.log" &
    TAIL_PID=$!
fi

# Until Ctrl-C, or until one of the binaries stops by itself.
set +e
wait -n "$HANDLER_PID" "$SERVICE_PID"
status=$?
set -e
say "a binary exited on its own (status $status); see $LOG_DIR"
exit 1
