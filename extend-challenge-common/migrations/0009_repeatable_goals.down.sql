-- Reverts 0009: repeat counts are dropped (a repeatable goal then reads as claimed once).
ALTER TABLE user_goal_progress DROP CONSTRAINT IF EXISTS check_times_claimed;
ALTER TABLE user_goal_progress DROP COLUMN times_claimed;
