-- Reverts 0010: per-requirement progress is dropped (progress keeps the first one).
ALTER TABLE user_goal_progress DROP COLUMN req_state;
