-- Back to the database's collation for the id columns 0017 changed (indexes rebuilt).
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.relname,
               string_agg(format('ALTER COLUMN %I TYPE %s COLLATE "default"', a.attname,
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
