-- Retention cleanup (CONTRACT §3.6) finds expired rows by `expires_at`; rows without one
-- (goals that do not rotate) are never deleted, so they stay out of the index.
CREATE INDEX IF NOT EXISTS idx_user_goal_progress_expires_at
    ON user_goal_progress (expires_at) WHERE expires_at IS NOT NULL;
