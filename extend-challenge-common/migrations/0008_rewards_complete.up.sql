-- Rewards, complete (CONTRACT §7).
--
-- Several rewards per goal: one grant intent per reward. reward_index is the reward's
-- position in the goal's `rewards` (0 for the one-reward form, so every existing intent is
-- the first reward of its goal and keeps its grant key). granted_at: when AGS was known to
-- hold the grant (the reward history's grantedAt).
ALTER TABLE reward_grants ADD COLUMN reward_index SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE reward_grants ADD COLUMN granted_at TIMESTAMPTZ NULL;
UPDATE reward_grants SET granted_at = updated_at WHERE state = 'granted';
ALTER TABLE reward_grants DROP CONSTRAINT reward_grants_pkey;
ALTER TABLE reward_grants ADD PRIMARY KEY (user_id, goal_id, period_key, reward_index);
ALTER TABLE reward_grants ADD CONSTRAINT check_reward_grants_index
    CHECK (reward_index >= 0 AND reward_index < 10);

-- The reward history: a player's grants, newest first.
CREATE INDEX IF NOT EXISTS idx_reward_grants_user_history
    ON reward_grants (user_id, created_at DESC, goal_id DESC, period_key DESC, reward_index DESC);

-- Auto-claim outbox: the event handler records here, in the transaction that completes a
-- goal, each goal to auto-claim (the goal itself, or an auto-claimed goal its completion may
-- unlock). The service grants from it (one replica at a time) and deletes the entry once
-- the goal is claimed or cannot be (not completed, locked, inactive). The handler never
-- calls AGS.
--   enqueued_at: the latest completion that asked for the claim (a later one moves it; the
--                service deletes an entry only if it is still the one it worked on).
--   next_attempt_at: when to try (again); attempts / last_error: retries after an in-doubt
--                or refused grant.
CREATE TABLE IF NOT EXISTS reward_outbox (
    user_id         VARCHAR(100) NOT NULL,
    goal_id         VARCHAR(100) NOT NULL,
    enqueued_at     TIMESTAMPTZ  NOT NULL DEFAULT clock_timestamp(),
    next_attempt_at TIMESTAMPTZ  NOT NULL DEFAULT clock_timestamp(),
    attempts        INT          NOT NULL DEFAULT 0,
    last_error      TEXT         NULL,
    PRIMARY KEY (user_id, goal_id)
);

CREATE INDEX IF NOT EXISTS idx_reward_outbox_due ON reward_outbox (next_attempt_at);
