-- Implicit default rows (store::implicit): a player's untouched default goals have no row;
-- one marker row per player (goal_id '', challenge_id '') carries when the player was
-- initialized (assigned_at) and which default goals that covered (req_state, one goal id
-- per line). No column changes: existing players keep their rows, which win over implicit
-- ones.
--
-- The event handler inserts the row of an implicit goal the first time an event changes it,
-- in the batch's last statement, with ON CONFLICT DO NOTHING. When another transaction
-- inserted the same row meanwhile, the batch must not commit without its delta: the
-- statement then calls this function, which fails it with serialization_failure (40001),
-- the code the flush treats as "lost a race, retry the batch as it is". The retry finds the
-- row and updates it.
CREATE OR REPLACE FUNCTION challenge_retry_batch(reason text) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'batch lost a race: %', reason USING ERRCODE = '40001';
END
$$;
