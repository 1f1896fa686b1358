#!/usr/bin/env bash
# Runs AccelByte's e2e scripts (extend-challenge-suite tests/e2e/test-*.sh) unchanged against
# challenge-demo and a running pair, e.g. the one scripts/dev.sh starts. The scripts are not
# in this repository: point at a checkout of the suite.
#
#   extend-challenge-demo-app/tests/reference-e2e/run.sh <suite>/tests/e2e [test-x.sh ...]
#
# The pair must use the reference's challenge config (the suite's service config/challenges.json,
# e.g. CHALLENGE_CONFIG_PATH=... scripts/dev.sh) and AB_NAMESPACE=$NAMESPACE. The scripts clean
# up through `docker compose exec postgres psql` and check `docker compose ps`: a shim on PATH
# (./docker) sends those to the local Postgres database $SHIM_DB instead.
#
# Settings (environment; defaults in brackets):
#   DEMO_APP [target/debug/challenge-demo]  BACKEND_URL [http://localhost:8000/challenge]
#   EVENT_HANDLER_URL [localhost:6566]  NAMESPACE [test]  SHIM_DB [challenge_db]
#   SHIM_PGPORT [5432]  SHIM_LOG_DIR [target/dev-logs] (for `docker compose logs`)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
SUITE=${1:?usage: run.sh <suite>/tests/e2e [test-x.sh ...]}
shift
[[ -f "$SUITE/helpers.sh" ]] || { echo "run.sh: no helpers.sh in $SUITE" >&2; exit 1; }

WORK=$(mktemp -d /tmp/reference-e2e.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/tests/e2e" "$WORK/bin" "$WORK/logs"
cp -r "$SUITE/." "$WORK/tests/e2e/"
# The M5 scripts need helpers that the stored helpers.sh may lack.
if ! grep -q '^trigger_stat_with_inc()' "$WORK/tests/e2e/helpers.sh"; then
    cat "$HERE/m5-helpers.sh" >>"$WORK/tests/e2e/helpers.sh"
fi
# test-reward-failures.sh greps the reference service's Go source at ../../ (the suite's
# layout, with its submodules): link it when the checkout has it.
if [[ -d "$SUITE/../../extend-challenge-service" ]]; then
    ln -s "$(cd "$SUITE/../../extend-challenge-service" && pwd)" "$WORK/extend-challenge-service"
fi
cp "$HERE/docker" "$WORK/bin/docker"
chmod +x "$WORK/bin/docker"

export PATH="$WORK/bin:$PATH"
export DEMO_APP=${DEMO_APP:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/challenge-demo}
export BACKEND_URL=${BACKEND_URL:-http://localhost:8000/challenge}
export EVENT_HANDLER_URL=${EVENT_HANDLER_URL:-localhost:6566}
export NAMESPACE=${NAMESPACE:-test} AUTH_MODE=${AUTH_MODE:-mock}
export SHIM_DB=${SHIM_DB:-challenge_db} SHIM_PGPORT=${SHIM_PGPORT:-5432}
export SHIM_LOG_DIR=${SHIM_LOG_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/dev-logs}
[[ -x "$DEMO_APP" ]] || { echo "run.sh: $DEMO_APP not found (cargo build -p extend-challenge-demo-app)" >&2; exit 1; }

scripts=("$@")
if [[ ${#scripts[@]} -eq 0 ]]; then
    mapfile -t scripts < <(cd "$WORK/tests/e2e" && ls test-*.sh)
fi
failed=0
cd "$WORK/tests/e2e"
for s in "${scripts[@]}"; do
    start=$(date +%s)
    if timeout 900 bash "./$s" >"$WORK/logs/$s.log" 2>&1; then
        echo "PASS $s ($(($(date +%s) - start)) s)"
    else
        echo "FAIL $s ($(($(date +%s) - start)) s); last lines:"
        tail -15 "$WORK/logs/$s.log" | sed 's/^/    /'
        failed=$((failed + 1))
    fi
done
echo "$failed of ${#scripts[@]} failed"
[[ $failed -eq 0 ]]
