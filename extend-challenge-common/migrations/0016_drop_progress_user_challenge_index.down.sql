-- Reverts 0016.
CREATE INDEX IF NOT EXISTS idx_user_goal_progress_user_challenge
    ON user_goal_progress (user_id, challenge_id);
