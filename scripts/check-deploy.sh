#!/usr/bin/env bash
# Checks deploy/ with the real tools (scripts/test.sh runs it; CI runs that):
#   - Prometheus rules: `promtool check rules`, the unit tests `promtool test rules`
#     (one per alert), `promtool check config` of the example scrape config;
#   - the Grafana dashboard is JSON with a query in every panel;
#   - the Kubernetes manifests against the Kubernetes schemas (`kubernetes-validate`).
# Tools: PROMTOOL (else promtool on PATH) and KUBERNETES_VALIDATE (else installed from PyPI
# under target/tools). `scripts/test.sh --install-prometheus` installs promtool.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PROMTOOL=${PROMTOOL:-$(command -v promtool || true)}
if [[ -z "$PROMTOOL" || ! -x "$PROMTOOL" ]]; then
    echo "check-deploy: promtool not found: run 'scripts/test.sh --install-prometheus' (Debian's prometheus package)" >&2
    exit 1
fi

echo "check-deploy: promtool check rules"
"$PROMTOOL" check rules deploy/prometheus/alerts.yml
echo "check-deploy: promtool test rules (one test per alert)"
(cd deploy/prometheus && "$PROMTOOL" test rules alerts.test.yml)
echo "check-deploy: promtool check config"
"$PROMTOOL" check config deploy/prometheus/prometheus.yml

# Every alert has a unit test.
alerts=$(grep -E '^\s*- alert:' deploy/prometheus/alerts.yml | sed -E 's/.*alert:\s*//' | sort -u)
for a in $alerts; do
    grep -qE "alertname: $a\$" deploy/prometheus/alerts.test.yml ||
        { echo "check-deploy: alert $a has no test in alerts.test.yml" >&2; exit 1; }
done

echo "check-deploy: Grafana dashboard"
python3 - deploy/grafana/extend-challenge.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
panels = [p for p in d["panels"] if p.get("type") != "row"]
assert panels, "no panels"
for p in panels:
    exprs = [t.get("expr", "").strip() for t in p.get("targets", [])]
    assert exprs and all(exprs), f"panel {p.get('title')!r} has no query"
print(f"{len(panels)} panels, {sum(len(p['targets']) for p in panels)} queries")
PY

# kubernetes-validate from PyPI, installed under target/ (nothing depends on a hand install).
KV=${KUBERNETES_VALIDATE:-}
if [[ -z "$KV" ]]; then
    dir="$ROOT/target/tools/kubernetes-validate"
    if [[ ! -x "$dir/bin/kubernetes-validate" ]]; then
        echo "check-deploy: installing kubernetes-validate (PyPI) into ${dir#"$ROOT"/}" >&2
        pip=(python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location
            --upgrade --target "$dir" kubernetes-validate)
        PIP_ROOT_USER_ACTION=ignore "${pip[@]}" >&2 ||
            PIP_ROOT_USER_ACTION=ignore "${pip[@]}" --break-system-packages >&2
    fi
    KV_RUN=(env PYTHONPATH="$dir" python3 -m kubernetes_validate)
else
    KV_RUN=("$KV")
fi
echo "check-deploy: kubernetes-validate (strict) deploy/k8s"
"${KV_RUN[@]}" --strict deploy/k8s/*.yaml
echo "check-deploy: OK"
