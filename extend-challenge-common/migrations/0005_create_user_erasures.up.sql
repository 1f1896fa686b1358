-- Player data erasure (CONTRACT §3.6): one tombstone per erased user. An erasure deletes the
-- user's rows and records when it happened; the event handler's flush drops any pending
-- update whose oldest contributing event is not later than `erased_at` (no zombie rows),
-- and a second erasure within a minute is refused (the rate limit lives here, so it holds
-- across replicas and transports). Tombstones are purged after ERASURE_TOMBSTONE_DAYS.
-- Only the user id is kept: no progress, no event content.
CREATE TABLE IF NOT EXISTS user_erasures (
    user_id   VARCHAR(100) PRIMARY KEY,
    namespace VARCHAR(100) NOT NULL,
    erased_at TIMESTAMPTZ  NOT NULL
);

CREATE INDEX IF NOT EXISTS idx_user_erasures_erased_at ON user_erasures (erased_at);
