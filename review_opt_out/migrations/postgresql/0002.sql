-- The registry's schema, PostgreSQL version 2. Applied once per database, in order, by
-- pipeline.database.migrate_postgresql; never edit a version once written: add the next.
-- Households whose shortened retention is not fully applied yet (Registry.set_retention).
CREATE TABLE IF NOT EXISTS retention_pending (
    household_id  TEXT COLLATE "C" PRIMARY KEY
);
