-- The registry's schema, SQLite version 2 (PostgreSQL's 0002.sql). Applied once per
-- database, in order, by pipeline.schema_versions.migrate; never edit a version once
-- written: add the next.
-- Households whose retention was shortened and whose older clips are not all expired yet:
-- written with the setting, cleared once they are; a crash in between is finished by the
-- next retention run, never left to the marks (which are past those clips).
CREATE TABLE IF NOT EXISTS retention_pending (
    household_id  TEXT PRIMARY KEY
);
