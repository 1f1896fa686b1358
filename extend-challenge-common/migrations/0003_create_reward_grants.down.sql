-- Reverts 0003: drops the reward grant intents (pending grants are forgotten).
DROP TABLE IF EXISTS reward_grants;
