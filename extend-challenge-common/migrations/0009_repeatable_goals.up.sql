-- Repeatable goals (CONTRACT §8): how many times the row's goal was claimed. A repeatable
-- goal claimed fewer than its maxTimes reads as started afresh (progress rules); each claim
-- has its own grant key (period `rep:<times claimed before it>`). Written only by claims.
ALTER TABLE user_goal_progress ADD COLUMN times_claimed INT NOT NULL DEFAULT 0;
ALTER TABLE user_goal_progress ADD CONSTRAINT check_times_claimed CHECK (times_claimed >= 0);
