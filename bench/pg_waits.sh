#!/usr/bin/env bash
# Samples what the benchmark database's busy backends wait on: 5 samples/s for $2 seconds.
# Usage: bench/pg_waits.sh <db> <secs>   (read-only; run it beside a load run)
db=${1:-bench_loadgen}; secs=${2:-15}
for _ in $(seq 1 $((secs * 5))); do
  psql -h 127.0.0.1 -U postgres -d "$db" -tAF'|' -c "SELECT coalesce(wait_event_type,'CPU'), coalesce(wait_event,'-'), left(regexp_replace(query,'\s+',' ','g'), 40)
    FROM pg_stat_activity WHERE datname = '$db' AND state = 'active' AND pid <> pg_backend_pid()" 2>/dev/null
  sleep 0.2
done | sort | uniq -c | sort -rn | head -20
