-- The registry's schema, PostgreSQL version 5 (SQLite's 0005.sql). Applied once per
-- database, in order, by pipeline.schema_versions.migrate; never edit a version once
-- written: add the next.
-- Signed heads of the audit log's Merkle tree (review_opt_out/audit_proof.py): its size
-- and root when signed, the chain hash of its last entry, and the Ed25519 signature of
-- the consent key. Each one signed is kept: households hold copies, and a head the
-- service signed once and later cannot reproduce shows the log was rewritten.
CREATE TABLE IF NOT EXISTS audit_heads (
    size        INTEGER PRIMARY KEY,
    root        TEXT COLLATE "C" NOT NULL,
    chain_hash  TEXT COLLATE "C" NOT NULL,
    signed_at   TEXT COLLATE "C" NOT NULL,
    key_id      TEXT COLLATE "C" NOT NULL,
    signature   TEXT COLLATE "C" NOT NULL
);
