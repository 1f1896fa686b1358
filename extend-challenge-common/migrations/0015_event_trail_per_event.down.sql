-- Reverts 0015: the trail one row per goal again (goal_event_trail as migration 0013 made
-- it), the events' entries carried back.
CREATE TABLE goal_event_trail (
    user_id         VARCHAR(100) NOT NULL,
    goal_id         VARCHAR(100) NOT NULL,
    received_at     TIMESTAMPTZ  NOT NULL,
    event_id        TEXT         NOT NULL,
    event_type      TEXT         NOT NULL,
    stat_code       TEXT         NOT NULL DEFAULT '',
    value           BIGINT       NOT NULL DEFAULT 0,
    reason          TEXT,
    progress_before INT          NOT NULL DEFAULT 0,
    progress_after  INT          NOT NULL DEFAULT 0
);

CREATE INDEX idx_goal_event_trail_key
    ON goal_event_trail (user_id, goal_id, received_at DESC);

CREATE INDEX idx_goal_event_trail_received_at
    ON goal_event_trail USING BRIN (received_at);

INSERT INTO goal_event_trail (user_id, goal_id, received_at, event_id, event_type, stat_code,
                              value, reason, progress_before, progress_after)
SELECT t.user_id, g.goal_id, t.received_at, t.event_id, t.event_type, t.stat_code, t.value,
       g.reason, g.progress_before, g.progress_after
  FROM event_trail t,
       unnest(t.goal_ids, t.reasons, t.progress_before, t.progress_after)
           AS g(goal_id, reason, progress_before, progress_after);

DROP TABLE event_trail;
