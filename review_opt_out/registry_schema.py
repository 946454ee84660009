"""The registry's tables: its schema versions, and what SQLite databases of older releases have.

The schema itself is SQL, `review_opt_out/migrations/{sqlite,postgresql}/NNNN.sql`,
applied by `pipeline.schema_versions` like the clip store's.
"""

from __future__ import annotations

from pipeline.database import POSTGRESQL, SQLITE, Database
from pipeline.schema_versions import migrate, versions

# The registry's schema versions (review_opt_out/migrations/sqlite/, …/postgresql/).
COMPONENT = "registry"
SQLITE_VERSIONS = versions("review_opt_out", SQLITE)
POSTGRESQL_VERSIONS = versions("review_opt_out", POSTGRESQL)

# Columns version 1 has that the first releases added by ALTER TABLE as they came: added to
# an older database before its versions are applied (version 1 creates only missing tables).
_COLUMNS_BEFORE_VERSION_1 = {
    ("review_considered", "verdict"): "TEXT NOT NULL DEFAULT 'unknown'",
    # A household from before "delete everything I said today" needed its day.
    ("households", "time_zone"): "TEXT NOT NULL DEFAULT 'UTC'",
    # Members from before roles were all made by an operator for their household: owners.
    ("members", "role"): "TEXT NOT NULL DEFAULT 'owner' CHECK (role IN ('owner', 'member'))",
}


def upgrade(db: Database) -> None:
    """Bring the registry's tables to the newest version (at open, before any other thread uses the connection)."""
    if db.dialect == SQLITE:
        db.execute("PRAGMA foreign_keys=ON")
    migrate(db, COMPONENT, "review_opt_out", sqlite_version_of_older_release)


def sqlite_version_of_older_release(db: Database) -> int:
    """The registry version a SQLite database without an `earmark_schema` row already has.

    Asked once per database, by the runner, in the transaction that records the answer:
    the only place that reads the layout itself. Releases before the versioned files
    created every table of theirs at each open and added columns as they came, so: no
    households, a new database (0); members with an email_status, version 3 (the
    release that added it had every table and column of the versions before); otherwise
    version 0 with the columns of version 1 such a database lacks added here, so that
    version 1 (creating only what is missing), 2 and 3 apply to it.
    """
    tables = {str(row[0]) for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "households" not in tables:
        return 0
    columns = {table: {str(row[1]) for row in db.execute(f"PRAGMA table_info({table})")} for table in tables}
    if "email_status" in columns["members"]:
        if "created_by" not in columns["reviewers"]:  # never released apart, but checked apart before
            for column in ("created_by", "activation_hash", "activation_expires_at"):
                db.execute(f"ALTER TABLE reviewers ADD COLUMN {column} TEXT")
        return 3
    for (table, column), spec in _COLUMNS_BEFORE_VERSION_1.items():
        if table in tables and column not in columns[table]:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {spec}")
    return 0
