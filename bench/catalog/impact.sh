#!/usr/bin/env bash
# The catalog dry-run and apply (CONTRACT §9, issue 20) against 1 M progress rows.
#
#   bench/catalog/impact.sh [ROWS_PER_GOAL]        (default 100000: 10 goals → 1 M rows)
#
# Creates the database bench_catalog on DATABASE_URL's server (dropped first), applies the
# migrations, seeds ROWS_PER_GOAL players × 10 goals of one challenge (progress 0–14 against
# a target of 10: in progress, completed, claimed), makes a 10-goal catalog the active version,
# then times `extend-challenge-service catalog diff` and `catalog apply` of a version that lowers
# 5 targets (10 → 8), renames 2 goals, removes 1 and adds 1. Prints the wall times and the
# report. Uses target/debug/extend-challenge-service (built if missing): the work is
# Postgres's (one scan, one update); the binary only formats.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROWS=${1:-100000}
ADMIN_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB_URL="${ADMIN_URL%/*}/bench_catalog"
BIN=target/debug/extend-challenge-service
[ -x "$BIN" ] || cargo build -q -p extend-challenge-service
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

psql "$ADMIN_URL" -qc 'DROP DATABASE IF EXISTS bench_catalog' -c 'CREATE DATABASE bench_catalog'
export DATABASE_URL="$DB_URL"
"$BIN" migrate up > /dev/null

python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
def goal(i, target=10, name=None):
    return {"goalId": f"g{i}", "name": name or f"Goal {i}", "description": "bench",
            "eventSource": "statistic",
            "requirement": {"statCode": f"stat{i}", "operator": ">=", "targetValue": target},
            "reward": {"type": "WALLET", "rewardId": "GOLD", "quantity": 1}, "prerequisites": []}
base = {"challenges": [{"challengeId": "c", "name": "C", "description": "bench",
                        "goals": [goal(i) for i in range(10)]}]}
goals = [goal(i, 8) for i in range(5)] + [goal(5, name="Renamed 5"), goal(6, name="Renamed 6"),
         goal(7), goal(8), goal(10)]
nxt = {"challenges": [{"challengeId": "c", "name": "C", "description": "bench", "goals": goals}]}
json.dump(base, open(f"{work}/base.json", "w"))
json.dump(nxt, open(f"{work}/next.json", "w"))
PY

echo "seeding $((ROWS * 10)) progress rows…"
psql "$DB_URL" -q <<SQL
INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, progress, status,
                                completed_at, claimed_at)
SELECT 'u' || u, 'g' || g, 'c', 'bench', p,
       CASE WHEN p >= 10 AND u % 2 = 0 THEN 'claimed' WHEN p >= 10 THEN 'completed'
            WHEN p = 0 THEN 'not_started' ELSE 'in_progress' END,
       CASE WHEN p >= 10 THEN now() END, CASE WHEN p >= 10 AND u % 2 = 0 THEN now() END
FROM generate_series(1, $ROWS) u, generate_series(0, 9) g, LATERAL (SELECT (u * 7 + g) % 15 AS p) x;
VACUUM ANALYZE user_goal_progress;
SQL
"$BIN" catalog apply "$WORK/base.json" > /dev/null
psql "$DB_URL" -Atc "SELECT 'rows: ' || count(*) || ', size: ' || pg_size_pretty(pg_total_relation_size('user_goal_progress')) FROM user_goal_progress"

t() { local s e; s=$(date +%s.%N); "$@"; e=$(date +%s.%N); echo "wall: $(echo "$e - $s" | bc) s"; }
echo "== catalog diff (dry-run)"
t "$BIN" catalog diff "$WORK/next.json"
echo "== catalog apply"
t "$BIN" catalog apply "$WORK/next.json" --expected-version 1
psql "$DB_URL" -Atc "SELECT 'completed by the apply: ' || count(*) FROM user_goal_progress WHERE status = 'completed' AND goal_id IN ('g0','g1','g2','g3','g4') AND progress BETWEEN 8 AND 9"
