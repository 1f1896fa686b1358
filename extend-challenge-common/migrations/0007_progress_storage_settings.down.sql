-- Reverts 0007: the progress table's storage settings back to the server's defaults.
ALTER TABLE user_goal_progress RESET (
    fillfactor,
    autovacuum_vacuum_scale_factor,
    autovacuum_analyze_scale_factor
);
