-- Reverts 0011. The marker rows go: a build before 0011 would read a player holding only a
-- marker as having rows (and not auto-initialize them) while showing none of their default
-- goals as assigned. Without the marker such a player reads as new: their next initialize
-- or event assigns the default goals they lack, as before 0011. Goals that were implicit
-- had no progress, so nothing earned is lost.
DELETE FROM user_goal_progress WHERE goal_id = '';
DROP FUNCTION IF EXISTS challenge_retry_batch(text);
