-- Reverts 0012: every table 0012 partitioned by user_id becomes one plain table again (rows
-- copied in this transaction), with its keys as before: reward_grants UNIQUE (grant_key),
-- event_dead_letters PRIMARY KEY (id). Tables that are not partitioned are left alone.
CREATE FUNCTION pg_temp.ec_copy_table(tbl text, target text, n int, overrides jsonb)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    old text := tbl || '_' || target || '_old';
    opts text[];
    defs text[] := '{}';
    r record;
    s text;
    i int;
BEGIN
    -- Storage settings: the table's own, or (from a partitioned table) its first partition's.
    SELECT c.reloptions INTO opts FROM pg_class c
     WHERE c.oid = CASE WHEN n > 1 THEN tbl ELSE tbl || '_p0' END::regclass;
    -- Keys first (overridden where the partition key must join them), then the indexes.
    FOR r IN SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
              WHERE conrelid = tbl::regclass AND contype IN ('p', 'u') ORDER BY conname LOOP
        defs := defs || format('ALTER TABLE %I ADD CONSTRAINT %I %s', tbl, r.conname,
                               coalesce(overrides ->> r.conname, r.def));
    END LOOP;
    FOR r IN SELECT replace(pg_get_indexdef(x.indexrelid), ' ON ONLY ', ' ON ') AS def
               FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid
              WHERE x.indrelid = tbl::regclass
                AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
              ORDER BY ic.relname LOOP
        defs := defs || r.def;
    END LOOP;

    EXECUTE format('ALTER TABLE %I RENAME TO %I', tbl, old);
    -- Free the key and index names for the new table (dropping the old table's keys and
    -- indexes; it is dropped itself once copied).
    FOR r IN SELECT conname FROM pg_constraint
              WHERE conrelid = old::regclass AND contype IN ('p', 'u') LOOP
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', old, r.conname);
    END LOOP;
    FOR r IN SELECT x.indexrelid::regclass AS idx FROM pg_index x
              WHERE x.indrelid = old::regclass LOOP
        EXECUTE format('DROP INDEX %s', r.idx);
    END LOOP;

    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
                   'INCLUDING STORAGE INCLUDING COMMENTS)%s', tbl, old,
                   CASE WHEN n > 1 THEN ' PARTITION BY HASH (user_id)' ELSE '' END);
    IF n > 1 THEN
        FOR i IN 0 .. n - 1 LOOP
            EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES WITH (MODULUS %s, REMAINDER %s)',
                           tbl || '_p' || i, tbl, n, i);
            IF opts IS NOT NULL THEN
                EXECUTE format('ALTER TABLE %I SET (%s)', tbl || '_p' || i, array_to_string(opts, ', '));
            END IF;
        END LOOP;
    ELSIF opts IS NOT NULL THEN
        EXECUTE format('ALTER TABLE %I SET (%s)', tbl, array_to_string(opts, ', '));
    END IF;
    FOREACH s IN ARRAY defs LOOP
        EXECUTE s;
    END LOOP;
    -- A serial column's sequence belongs to the old table: hand it over before the drop.
    FOR r IN SELECT d.objid::regclass AS seq, a.attname FROM pg_depend d
               JOIN pg_class sc ON sc.oid = d.objid AND sc.relkind = 'S'
               JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
              WHERE d.refobjid = old::regclass AND d.deptype = 'a' LOOP
        EXECUTE format('ALTER SEQUENCE %s OWNED BY %I.%I', r.seq, tbl, r.attname);
    END LOOP;
    EXECUTE format('INSERT INTO %I SELECT * FROM %I', tbl, old);
    EXECUTE format('DROP TABLE %I', old);
END
$fn$;

DO $$
DECLARE
    t text;
    overrides jsonb := '{"reward_grants_grant_key": "UNIQUE (grant_key)",
                         "event_dead_letters_pkey": "PRIMARY KEY (id)"}';
BEGIN
    FOREACH t IN ARRAY ARRAY['user_goal_progress', 'reward_grants', 'reward_outbox',
                             'user_erasures', 'event_dead_letters'] LOOP
        IF EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = t::regclass) THEN
            PERFORM pg_temp.ec_copy_table(t, 'partitioned', 0, overrides);
        END IF;
    END LOOP;
END
$$;

DROP FUNCTION pg_temp.ec_copy_table(text, text, int, jsonb);
