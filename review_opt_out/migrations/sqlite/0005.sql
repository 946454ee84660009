-- The registry's schema, SQLite version 5 (PostgreSQL's 0005.sql). Applied once per
-- database, in order, by pipeline.schema_versions.migrate; never edit a version once
-- written: add the next.
-- Signed heads of the audit log's Merkle tree (review_opt_out/audit_proof.py): its size
-- and root when signed, the chain hash of its last entry, and the Ed25519 signature of
-- the consent key. Each one signed is kept: households hold copies, and a head the
-- service signed once and later cannot reproduce shows the log was rewritten.
CREATE TABLE IF NOT EXISTS audit_heads (
    size        INTEGER PRIMARY KEY,
    root        TEXT NOT NULL,
    chain_hash  TEXT NOT NULL,
    signed_at   TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    signature   TEXT NOT NULL
);
