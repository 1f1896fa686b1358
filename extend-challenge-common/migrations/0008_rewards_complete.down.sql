-- Reverts 0008: the auto-claim outbox goes, and grant intents are one per (user, goal,
-- period) again. Intents of a goal's second and later rewards cannot be kept under that key:
-- they are deleted (their grants stay at AGS).
DROP TABLE IF EXISTS reward_outbox;
DROP INDEX IF EXISTS idx_reward_grants_user_history;
DELETE FROM reward_grants WHERE reward_index > 0;
ALTER TABLE reward_grants DROP CONSTRAINT IF EXISTS check_reward_grants_index;
ALTER TABLE reward_grants DROP CONSTRAINT reward_grants_pkey;
ALTER TABLE reward_grants ADD PRIMARY KEY (user_id, goal_id, period_key);
ALTER TABLE reward_grants DROP COLUMN granted_at;
ALTER TABLE reward_grants DROP COLUMN reward_index;
