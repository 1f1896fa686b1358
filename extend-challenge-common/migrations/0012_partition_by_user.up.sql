-- Hash partitioning by user_id (issue 22 part 3; docs/SCALING.md), chosen when this
-- migration runs: `extend-challenge-service migrate up --partitions N`, or DB_PARTITIONS=N
-- for the binaries' start-up migrations. Both hand N to this script as the session setting
-- `extend_challenge.partitions`; without it (or with 0 or 1) the migration changes nothing
-- and the tables stay as they are. It runs once: to change N later, `migrate down` to 0011
-- and `up` again with the new N.
--
-- The per-user tables become `PARTITION BY HASH (user_id)` with N partitions
-- `<table>_p0 … _p<N-1>`: user_goal_progress, reward_grants, reward_outbox, user_erasures and
-- event_dead_letters. Each is converted in this migration's one transaction: the table is
-- renamed, an empty partitioned copy takes its name (same columns, defaults, checks,
-- indexes; the storage settings of 0007 on every partition, since a partitioned parent has
-- no storage), the rows are copied and the old table dropped. The tables are locked for the
-- copy: on a large table run it in a maintenance window.
--
-- A unique key of a partitioned table must contain the partition key, so two keys gain
-- user_id: reward_grants' UNIQUE (grant_key) becomes UNIQUE (user_id, grant_key) (the grant
-- key is derived from the user id, so no two users share one anyway; every statement
-- addresses an intent by user and key), and event_dead_letters' PRIMARY KEY (id) becomes
-- (id, user_id) (ids still come from one sequence).
--
-- event_ledger stays as it is: its key is the event id (CONTRACT §2.2 de-duplicates by id
-- alone, whoever the user), its readers know only ids, and its size is bounded by its 1 h
-- TTL. docs/SCALING.md says why, and how it distributes on Citus.

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
    n int := coalesce(nullif(current_setting('extend_challenge.partitions', true), ''), '0')::int;
BEGIN
    IF n < 0 OR n > 1024 THEN
        RAISE EXCEPTION 'extend_challenge.partitions = %: expected 0 (none) to 1024', n;
    END IF;
    IF n <= 1 THEN
        RETURN;
    END IF;
    PERFORM pg_temp.ec_copy_table('user_goal_progress', 'unpartitioned', n, '{}');
    PERFORM pg_temp.ec_copy_table('reward_grants', 'unpartitioned', n,
        '{"reward_grants_grant_key": "UNIQUE (user_id, grant_key)"}');
    PERFORM pg_temp.ec_copy_table('reward_outbox', 'unpartitioned', n, '{}');
    PERFORM pg_temp.ec_copy_table('user_erasures', 'unpartitioned', n, '{}');
    PERFORM pg_temp.ec_copy_table('event_dead_letters', 'unpartitioned', n,
        '{"event_dead_letters_pkey": "PRIMARY KEY (id, user_id)"}');
END
$$;

DROP FUNCTION pg_temp.ec_copy_table(text, text, int, jsonb);
