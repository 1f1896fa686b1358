-- Storage settings for the progress table, which events update in place all day.
--
-- fillfactor 90: inserts (initialize, auto-initialize) leave a tenth of each page free, so
-- an event's UPDATE — none of whose columns is indexed — can put the new row version on the
-- same page (a HOT update: no new index entries, and the old version is pruned without
-- VACUUM). With full pages every update moves the row and adds an entry to each of the
-- table's three indexes.
--
-- autovacuum at 2 % dead rows instead of Postgres's default 20 %: on a table of millions of
-- rows the default lets hundreds of thousands of dead versions pile up before a vacuum
-- starts. The README ("Postgres settings") lists these and the server-wide ones we recommend.
ALTER TABLE user_goal_progress SET (
    fillfactor = 90,
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02
);
