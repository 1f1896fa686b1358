-- Drops idx_user_goal_progress_user_challenge (issue 22, write amplification). No statement
-- uses it: every read of a player's rows says `user_id = $1` and is served by the primary
-- key (user_id, goal_id), whose first column is the same; the one statement that also names
-- a challenge (store/player.rs) ORs it with goal ids, which this index cannot serve alone.
-- Each new progress row paid an entry in it: on AccelByte's scenario 5, where an event
-- inserts up to 20 rows, one of three index insertions per row.
DROP INDEX IF EXISTS idx_user_goal_progress_user_challenge;
