ALTER TABLE user_goal_progress DROP COLUMN IF EXISTS resets;
DROP TABLE IF EXISTS catalog_active;
DROP TABLE IF EXISTS catalog_versions;
