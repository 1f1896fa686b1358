-- Reverts 0006: drops the retention cleanup's index.
DROP INDEX IF EXISTS idx_user_goal_progress_expires_at;
