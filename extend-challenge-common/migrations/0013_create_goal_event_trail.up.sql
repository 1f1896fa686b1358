-- The event trail (CONTRACT §10): per player and goal, the latest events that reached the
-- goal, counted or ignored with the rule that ignored them. Written by the event handler
-- after each batch commits (asynchronously, see store/trail.rs for the loss window);
-- trimmed by the service's cleanup: entries older than EVENT_TRAIL_RETENTION_DAYS, and
-- those beyond the newest 64 of their player and goal.
CREATE TABLE IF NOT EXISTS goal_event_trail (
    user_id         VARCHAR(100) NOT NULL,
    goal_id         VARCHAR(100) NOT NULL,
    received_at     TIMESTAMPTZ  NOT NULL,
    event_id        TEXT         NOT NULL,
    event_type      TEXT         NOT NULL,
    stat_code       TEXT         NOT NULL DEFAULT '',
    value           BIGINT       NOT NULL DEFAULT 0,
    -- NULL: counted; otherwise the rule that ignored the event.
    reason          TEXT,
    progress_before INT          NOT NULL DEFAULT 0,
    progress_after  INT          NOT NULL DEFAULT 0
);

-- The read (one player's goal, newest first) and the per-goal trim.
CREATE INDEX IF NOT EXISTS idx_goal_event_trail_key
    ON goal_event_trail (user_id, goal_id, received_at DESC);

-- Rows arrive in time order: a BRIN index finds the expired ones at almost no insert cost.
CREATE INDEX IF NOT EXISTS idx_goal_event_trail_received_at
    ON goal_event_trail USING BRIN (received_at);
