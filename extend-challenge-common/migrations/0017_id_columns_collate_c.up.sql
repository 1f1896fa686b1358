-- The id columns compare byte by byte: COLLATE "C" (issue 22; BENCHMARKS.md, "third pass").
-- Every key of the per-user tables is an id (user, goal, event, grant), never text a person
-- reads in order, yet under the database's collation each comparison in their B-trees went
-- through the locale (strcoll): 17 % of Postgres's CPU on AccelByte's scenario 5 with the
-- C.UTF-8 locale, more with en_US. "C" also orders as the code sorts (byte order), so the
-- lock order of a batch is the same in Rust and in SQL.
--
-- A column that is a partition key (user_id, when migration 0012 partitioned the table)
-- cannot change its collation and keeps it; its other id columns change.
--
-- No row is rewritten, but every index on these columns is rebuilt, with the table locked:
-- on a large table run it in a maintenance window.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.relname,
               string_agg(format('ALTER COLUMN %I TYPE %s COLLATE "C"', a.attname,
                                 format_type(a.atttypid, a.atttypmod)), ', ') AS changes
          FROM (VALUES ('user_goal_progress', 'user_id'), ('user_goal_progress', 'goal_id'),
                       ('event_ledger', 'event_id'),
                       ('event_trail', 'user_id'),
                       ('user_erasures', 'user_id'),
                       ('reward_grants', 'user_id'), ('reward_grants', 'goal_id'),
                       ('reward_grants', 'period_key'), ('reward_grants', 'grant_key'),
                       ('reward_outbox', 'user_id'), ('reward_outbox', 'goal_id'))
               AS v(tbl, col)
          JOIN pg_class c ON c.relname = v.tbl
                         AND c.relnamespace = current_schema()::regnamespace
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = v.col
         WHERE NOT EXISTS (SELECT 1 FROM pg_partitioned_table p
                            WHERE p.partrelid = c.oid AND a.attnum = ANY (p.partattrs::int2[]))
         GROUP BY c.relname
    LOOP
        EXECUTE format('ALTER TABLE %I %s', r.relname, r.changes);
    END LOOP;
END $$;
