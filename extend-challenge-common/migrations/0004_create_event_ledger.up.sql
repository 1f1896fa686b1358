-- The event handler's record of applied event ids (CONTRACT §2.2): written in the batch
-- transaction that applies an event's deltas (or dead-letters them), so "applied" is known
-- whatever happens between the commit and any Redis write. Rows older than the
-- ledger TTL (1 h) are deleted in batches by one replica at a time.
CREATE TABLE IF NOT EXISTS event_ledger (
    event_id   TEXT        PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

-- Rows arrive in time order: a BRIN index finds the expired ones at almost no insert cost.
CREATE INDEX IF NOT EXISTS idx_event_ledger_applied_at
    ON event_ledger USING BRIN (applied_at);
