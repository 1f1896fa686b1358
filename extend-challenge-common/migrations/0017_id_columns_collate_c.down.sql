-- Back to the database's collation for the columns 0017 declared COLLATE "C" (their indexes
-- are rebuilt). On a partitioned table the parent's change reaches its partitions.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.relname,
               string_agg(format('ALTER COLUMN %I TYPE %s COLLATE "default"', a.attname,
                                 format_type(a.atttypid, a.atttypmod)), ', ') AS changes
          FROM pg_class c
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE c.relname = ANY ('{user_goal_progress, event_ledger, event_trail, user_erasures,
                                  reward_grants, reward_outbox}'::text[])
           AND c.relnamespace = current_schema()::regnamespace
           AND a.attcollation = 'pg_catalog."C"'::regcollation
         GROUP BY c.relname
    LOOP
        EXECUTE format('ALTER TABLE %I %s', r.relname, r.changes);
    END LOOP;
END $$;
