-- The event trail stored one row per event instead of one per goal the event reached
-- (issue 22). An event of a catalog whose stat codes feed 20 goals wrote 20 trail rows, and
-- the trail cost a fifth of Postgres's CPU on AccelByte's scenario 5 (BENCHMARKS.md). Here
-- an event is one row; the goals it reached, each one's result and its progress before and
-- after are parallel arrays (element i of each belongs to goal_ids[i]).
--
-- The read is unchanged (CONTRACT §10: one player's goal, newest first): the index on
-- (user_id, received_at DESC) walks the player's events newest first and keeps those whose
-- goal_ids hold the goal. The cleanup keeps, per player and goal, the newest 64 events, as
-- before: a row goes once every goal it holds has 64 newer ones (store/trail.rs).
--
-- The table is partitioned like user_goal_progress: by hash of user_id with as many
-- partitions as migration 0012 gave that table (none by default). The entries of
-- goal_event_trail are carried over, grouped by event.
DO $$
DECLARE
    n int := (SELECT count(*) FROM pg_inherits WHERE inhparent = 'user_goal_progress'::regclass);
    i int;
BEGIN
    EXECUTE format($ddl$
        CREATE TABLE event_trail (
            user_id         VARCHAR(100) NOT NULL,
            received_at     TIMESTAMPTZ  NOT NULL,
            event_id        TEXT         NOT NULL,
            event_type      TEXT         NOT NULL,
            stat_code       TEXT         NOT NULL DEFAULT '',
            value           BIGINT       NOT NULL DEFAULT 0,
            goal_ids        TEXT[]       NOT NULL,
            -- NULL element: counted; otherwise the rule that ignored the event for that goal.
            reasons         TEXT[]       NOT NULL,
            progress_before INT[]        NOT NULL,
            progress_after  INT[]        NOT NULL,
            CONSTRAINT event_trail_parallel_arrays CHECK (
                cardinality(goal_ids) > 0
                AND cardinality(reasons) = cardinality(goal_ids)
                AND cardinality(progress_before) = cardinality(goal_ids)
                AND cardinality(progress_after) = cardinality(goal_ids))
        )%s$ddl$, CASE WHEN n > 1 THEN ' PARTITION BY HASH (user_id)' ELSE '' END);
    IF n > 1 THEN
        FOR i IN 0 .. n - 1 LOOP
            EXECUTE format('CREATE TABLE %I PARTITION OF event_trail '
                           'FOR VALUES WITH (MODULUS %s, REMAINDER %s)', 'event_trail_p' || i, n, i);
        END LOOP;
    END IF;
END
$$;

-- The read (one player's events, newest first) and the per-player trim.
CREATE INDEX idx_event_trail_user ON event_trail (user_id, received_at DESC);

-- Rows arrive in time order: a BRIN index finds the expired ones at almost no insert cost.
CREATE INDEX idx_event_trail_received_at ON event_trail USING BRIN (received_at);

INSERT INTO event_trail (user_id, received_at, event_id, event_type, stat_code, value,
                         goal_ids, reasons, progress_before, progress_after)
SELECT user_id, received_at, event_id, event_type, stat_code, value,
       array_agg(goal_id ORDER BY goal_id), array_agg(reason ORDER BY goal_id),
       array_agg(progress_before ORDER BY goal_id), array_agg(progress_after ORDER BY goal_id)
  FROM goal_event_trail
 GROUP BY user_id, received_at, event_id, event_type, stat_code, value;

DROP TABLE goal_event_trail;
