# Helpers the M5 rotation scripts of AccelByte's e2e suite call but the stored helpers.sh
# (last stored at the M4 commit c995610) lacks. Written for this repository from the
# scripts' call sites; run.sh appends them to a temporary copy of helpers.sh only when the
# suite's own helpers.sh does not define them.

assert_not_empty() {
    if [ -z "$1" ] || [ "$1" = "null" ]; then
        echo -e "${RED}❌ ASSERTION FAILED${NC}: $2 (empty)"
        exit 1
    fi
    echo -e "${GREEN}✅ PASS${NC}: $2"
}

assert_gt() {
    if ! [ "$1" -gt "$2" ] 2>/dev/null; then
        echo -e "${RED}❌ ASSERTION FAILED${NC}: $3 (expected > $2, got '$1')"
        exit 1
    fi
    echo -e "${GREEN}✅ PASS${NC}: $3"
}

get_goal_status() {
    echo "$1" | jq -r ".challenges[].goals[] | select(.goalId == \"$2\") | .status // \"not_started\"" 2>/dev/null
}

get_goal_expires_at() {
    echo "$1" | jq -r ".challenges[].goals[] | select(.goalId == \"$2\") | .expiresAt // \"\"" 2>/dev/null
}

get_goal_expires_in_seconds() {
    echo "$1" | jq -r ".challenges[].goals[] | select(.goalId == \"$2\") | .expiresInSeconds // 0" 2>/dev/null
}

trigger_stat_with_inc() {
    run_cli trigger-event stat-update --stat-code="$1" --value="$2" --inc="$3"
}

get_rotation_status() {
    run_cli get-rotation-status "$1" --format=json
}

# Moves one progress row back in time by an interval: its timestamps, as if written then.
# (Our rows carry the period in expires_at / last_event_at, not only updated_at.)
backdate_updated_at() {
    docker compose exec -T postgres psql -U postgres -d challenge_db -c \
        "UPDATE user_goal_progress SET updated_at = updated_at - interval '$3', expires_at = expires_at - interval '$3', last_event_at = last_event_at - interval '$3', completed_at = completed_at - interval '$3', assigned_at = assigned_at - interval '$3' WHERE user_id = '$1' AND goal_id = '$2';" >/dev/null
}

query_db_field() {
    docker compose exec -T postgres psql -U postgres -d challenge_db -tA -c \
        "SELECT $3 FROM user_goal_progress WHERE user_id = '$1' AND goal_id = '$2';"
}
