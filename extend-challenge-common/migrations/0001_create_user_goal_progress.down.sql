-- Reverts 0001: drops the progress table (and with it every player's progress).
DROP TABLE IF EXISTS user_goal_progress;
