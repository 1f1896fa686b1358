-- One row per goal assigned to a player. Timestamps are TIMESTAMPTZ (the reference used
-- TIMESTAMP without zone). last_event_at is ours: when the row last took an event, so
-- daily-increment goals count at most once per UTC day whatever else touched the row.
CREATE TABLE IF NOT EXISTS user_goal_progress (
    user_id        VARCHAR(100) NOT NULL,
    goal_id        VARCHAR(100) NOT NULL,
    challenge_id   VARCHAR(100) NOT NULL,
    namespace      VARCHAR(100) NOT NULL,
    progress       INT          NOT NULL DEFAULT 0,
    status         VARCHAR(20)  NOT NULL DEFAULT 'not_started',
    completed_at   TIMESTAMPTZ  NULL,
    claimed_at     TIMESTAMPTZ  NULL,
    created_at     TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    updated_at     TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    is_active      BOOLEAN      NOT NULL DEFAULT true,
    assigned_at    TIMESTAMPTZ  NULL,
    expires_at     TIMESTAMPTZ  NULL,
    baseline_value INT          NULL,
    last_event_at  TIMESTAMPTZ  NULL,

    PRIMARY KEY (user_id, goal_id),
    CONSTRAINT check_status CHECK (status IN ('not_started', 'in_progress', 'completed', 'claimed')),
    CONSTRAINT check_progress_non_negative CHECK (progress >= 0),
    CONSTRAINT check_claimed_implies_completed CHECK (claimed_at IS NULL OR completed_at IS NOT NULL)
);

CREATE INDEX IF NOT EXISTS idx_user_goal_progress_user_challenge
    ON user_goal_progress (user_id, challenge_id);
