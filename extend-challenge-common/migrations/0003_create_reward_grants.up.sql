-- One grant intent per (user, goal, period) (CONTRACT §3.3): committed before AGS is called,
-- so a grant whose outcome is unknown (lost reply, late answer, crash) is resolved before
-- any new grant. grant_key is derived from namespace, user, challenge, goal and period; it
-- is the marker put into the grant, or the fulfillment transaction id.
--   pending: a grant may be under way or in doubt; owner/lease_until say who works on it.
--   granted: AGS holds the grant.
--   failed:  AGS refused it (a definite answer); a later claim may try again.
CREATE TABLE IF NOT EXISTS reward_grants (
    user_id           VARCHAR(100) NOT NULL,
    goal_id           VARCHAR(100) NOT NULL,
    period_key        VARCHAR(40)  NOT NULL,
    challenge_id      VARCHAR(100) NOT NULL,
    namespace         VARCHAR(100) NOT NULL,
    grant_key         VARCHAR(64)  NOT NULL,
    reward_type       VARCHAR(10)  NOT NULL,
    reward_id         TEXT         NOT NULL,
    quantity          INT          NOT NULL,
    state             VARCHAR(10)  NOT NULL DEFAULT 'pending',
    owner             VARCHAR(64)  NULL,
    lease_until       TIMESTAMPTZ  NULL,
    attempts          INT          NOT NULL DEFAULT 0,
    last_attempt_at   TIMESTAMPTZ  NULL,
    next_check_at     TIMESTAMPTZ  NOT NULL,
    goal_completed_at TIMESTAMPTZ  NULL,
    last_error        TEXT         NULL,
    created_at        TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    updated_at        TIMESTAMPTZ  NOT NULL DEFAULT NOW(),

    PRIMARY KEY (user_id, goal_id, period_key),
    CONSTRAINT reward_grants_grant_key UNIQUE (grant_key),
    CONSTRAINT check_reward_grants_state CHECK (state IN ('pending', 'granted', 'failed')),
    CONSTRAINT check_reward_grants_type CHECK (reward_type IN ('ITEM', 'WALLET')),
    CONSTRAINT check_reward_grants_quantity CHECK (quantity > 0)
);

-- The reconciler's scan: pending intents due for a check.
CREATE INDEX IF NOT EXISTS idx_reward_grants_pending
    ON reward_grants (next_check_at) WHERE state = 'pending';
