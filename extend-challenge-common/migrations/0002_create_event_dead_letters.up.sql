-- Dead letters of the event handler (CONTRACT §2): one user's deltas that Postgres refused
-- for a data reason (not a connectivity one), with the events that contributed to them and
-- the error. Everything else in the batch was committed; an operator lists and replays these
-- with `extend-challenge-event-handler dead-letters list | replay`.
CREATE TABLE IF NOT EXISTS event_dead_letters (
    id              BIGSERIAL   PRIMARY KEY,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    -- As received, for reading and searching; control characters (a NUL a text column
    -- refuses) are shown escaped as \u{..}. The exact values are in `payload`.
    user_id         TEXT        NOT NULL,
    namespace       TEXT        NOT NULL,
    -- The ids of the events whose deltas these are (events without an id are not listed).
    event_ids       TEXT[]      NOT NULL,
    -- {"userId", "namespace", "deltas": [{"goalId", "delta"}]}: JSON, not JSONB, so that a
    -- \u0000 escape (the usual poison) is stored as sent.
    payload         JSON        NOT NULL,
    -- Why Postgres refused them; after a failed replay, why the replay failed.
    error           TEXT        NOT NULL,
    replay_attempts INT         NOT NULL DEFAULT 0,
    replayed_at     TIMESTAMPTZ NULL
);

CREATE INDEX IF NOT EXISTS idx_event_dead_letters_pending
    ON event_dead_letters (id) WHERE replayed_at IS NULL;
