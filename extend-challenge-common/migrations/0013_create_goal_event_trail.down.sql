DROP TABLE IF EXISTS goal_event_trail;
