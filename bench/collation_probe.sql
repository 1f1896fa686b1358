-- Keyed lookups and updates on a progress-shaped table (700,000 rows, 20,000 random keys),
-- id columns under the database's collation against COLLATE "C" (migration 0017).
--   psql -q <database> -f bench/collation_probe.sql   # run it in databases of each LC_COLLATE
DROP TABLE IF EXISTS t_def, t_c;
CREATE TABLE t_def (user_id varchar(100), goal_id varchar(100), progress int, PRIMARY KEY (user_id, goal_id));
CREATE TABLE t_c (user_id varchar(100) COLLATE "C", goal_id varchar(100) COLLATE "C", progress int, PRIMARY KEY (user_id, goal_id));
INSERT INTO t_def SELECT 'user-' || lpad(u::text, 6, '0') || '-abcdef0123', 'challenge-' || lpad((g/20)::text,3,'0') || '-goal-' || lpad((g%20)::text,2,'0'), 0 FROM generate_series(1,10000) u, generate_series(1,70) g;
INSERT INTO t_c SELECT * FROM t_def;
VACUUM ANALYZE t_def; VACUUM ANALYZE t_c;
CREATE TEMP TABLE keys AS SELECT user_id, goal_id FROM t_def ORDER BY random() LIMIT 20000;
\timing on
SELECT count(*) FROM (SELECT t.progress FROM (SELECT * FROM keys) k JOIN t_def t ON t.user_id = k.user_id AND t.goal_id = k.goal_id ORDER BY t.user_id, t.goal_id) x;
SELECT count(*) FROM (SELECT t.progress FROM (SELECT * FROM keys) k JOIN t_c t ON t.user_id = k.user_id AND t.goal_id = k.goal_id ORDER BY t.user_id, t.goal_id) x;
SELECT count(*) FROM (SELECT t.progress FROM (SELECT * FROM keys) k JOIN t_def t ON t.user_id = k.user_id AND t.goal_id = k.goal_id ORDER BY t.user_id, t.goal_id) x;
SELECT count(*) FROM (SELECT t.progress FROM (SELECT * FROM keys) k JOIN t_c t ON t.user_id = k.user_id AND t.goal_id = k.goal_id ORDER BY t.user_id, t.goal_id) x;
UPDATE t_def t SET progress = progress + 1 FROM keys k WHERE t.user_id = k.user_id AND t.goal_id = k.goal_id;
UPDATE t_c t SET progress = progress + 1 FROM keys k WHERE t.user_id = k.user_id AND t.goal_id = k.goal_id;
UPDATE t_def t SET progress = progress + 1 FROM keys k WHERE t.user_id = k.user_id AND t.goal_id = k.goal_id;
UPDATE t_c t SET progress = progress + 1 FROM keys k WHERE t.user_id = k.user_id AND t.goal_id = k.goal_id;
DROP TABLE t_def, t_c;
