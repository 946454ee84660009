-- The registry's schema, SQLite version 4 (PostgreSQL's 0004.sql). Applied once per
-- database, in order, by pipeline.schema_versions.migrate; never edit a version once
-- written: add the next.
-- Which recordings a person heard: the first time a reviewer's browser was sent a clip's
-- audio, under the pseudonym the household sees (never the reviewer's name), and whether
-- the transcript was corrected. Kept as long as the clip is, deleted with it.
CREATE TABLE IF NOT EXISTS review_heard (
    utterance_id        TEXT PRIMARY KEY,
    household_id        TEXT NOT NULL,
    reviewer_pseudonym  TEXT NOT NULL,
    first_heard_at      TEXT NOT NULL,
    corrected           INTEGER NOT NULL DEFAULT 0 CHECK (corrected IN (0, 1))
);
CREATE INDEX IF NOT EXISTS review_heard_by_household ON review_heard (household_id, first_heard_at);
