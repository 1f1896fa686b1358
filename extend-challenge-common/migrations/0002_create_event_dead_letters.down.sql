-- Reverts 0002: drops the dead-letter table (list or replay what it holds first).
DROP TABLE IF EXISTS event_dead_letters;
