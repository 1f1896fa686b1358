-- Reverts 0005: drops the erasure tombstones (events from before an erasure could count again).
DROP TABLE IF EXISTS user_erasures;
