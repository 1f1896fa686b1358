-- Live operations (CONTRACT §9): the challenge catalog as numbered, immutable versions, one
-- of them active. Reference tables (not per user): small, read by every replica at start-up
-- and on each change.
--   content: the challenges.json text as given (validated before it is stored).
--   sha256:  of content, hex.
--   source:  file:<sha256> (imported at start-up) | api:<user> | cli | rollback of another.
--   report:  the impact the version made when it was applied (the dry-run's report, with the
--            counts the apply really changed).
CREATE TABLE IF NOT EXISTS catalog_versions (
    version    BIGINT      PRIMARY KEY,
    content    TEXT        NOT NULL,
    sha256     CHAR(64)    NOT NULL,
    source     TEXT        NOT NULL,
    note       TEXT        NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    report     JSONB       NULL,
    CONSTRAINT check_catalog_versions_positive CHECK (version > 0)
);

-- The active version (one row). file_sha256: the challenges.json content last imported, so a
-- restart with the same file keeps a version applied through the API since.
CREATE TABLE IF NOT EXISTS catalog_active (
    singleton    BOOLEAN     PRIMARY KEY DEFAULT true,
    version      BIGINT      NOT NULL REFERENCES catalog_versions (version),
    file_sha256  CHAR(64)    NULL,
    activated_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT check_catalog_active_singleton CHECK (singleton)
);

-- The admin reset (a QA tool): how many times the row was reset. A claim after a reset pays
-- under a period key of its own (`<period>/r<resets>`), so the grant of the period before
-- the reset, which AGS still holds under its key, is never mistaken for the new one.
ALTER TABLE user_goal_progress ADD COLUMN IF NOT EXISTS resets INT NOT NULL DEFAULT 0;
