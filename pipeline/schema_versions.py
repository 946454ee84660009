"""Schema versions: numbered SQL files per engine, and the one runner that applies them.

Each component of the cloud's database keeps its schema as versions,
`{package}/migrations/{sqlite,postgresql}/NNNN.sql` (the clip store in `pipeline`, the
consent registry in `review_opt_out`). Version N is the same change on both engines,
spelled each engine's way. A database records in `earmark_schema` the version each
component has reached, on SQLite as on PostgreSQL, and `migrate` applies the missing
ones in order, each in a transaction of its own under the writer lock: several processes
opening one database at once apply every version exactly once. A version, once written,
is never edited (a test pins their digests): a change comes as the next file. (The
first PostgreSQL files name this runner by its earlier name, `migrate_postgresql`.)

SQLite databases older releases left have no `earmark_schema` row yet (those releases
upgraded SQLite in Python). At the first open the component's own function for that
(`older_sqlite`) says which versions such a database already has; that answer is recorded
in the same transaction, so it is asked once, and the runner takes over from there.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Final

from pipeline.database import POSTGRESQL, SQLITE, Database
from pipeline.errors import DatabaseUnavailable

# The runner's own table, the same two columns on both engines (text compared byte by byte).
_SCHEMA_TABLE: Final = {
    SQLITE: "CREATE TABLE IF NOT EXISTS earmark_schema (component TEXT PRIMARY KEY, version INTEGER NOT NULL)",
    POSTGRESQL: 'CREATE TABLE IF NOT EXISTS earmark_schema (component TEXT COLLATE "C" PRIMARY KEY, '
    "version INTEGER NOT NULL)",
}


def versions(package: str, dialect: str) -> list[str]:
    """A component's schema versions for one engine: `{package}/migrations/{dialect}/NNNN.sql`, in order.

    The files are numbered from 0001 without a gap: a version's number is its place.
    """
    folder = resources.files(package).joinpath(f"migrations/{dialect}")
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".sql"))
    if names != [f"{number:04d}.sql" for number in range(1, len(names) + 1)]:
        raise RuntimeError(f"{package}'s {dialect} schema versions are not numbered 0001.sql onwards: {names}")
    return [folder.joinpath(name).read_text(encoding="utf-8") for name in names]


def migrate(
    db: Database,
    component: str,
    package: str,
    older_sqlite: Callable[[Database], int] | None = None,
) -> None:
    """Bring `component`'s tables to the newest version in `package`, one version per transaction.

    `older_sqlite` is asked, inside the first transaction and only on SQLite, which
    version a database without an `earmark_schema` row already has (0: none of it).
    """
    scripts = versions(package, db.dialect)
    with db.writing():
        db.execute(_SCHEMA_TABLE[db.dialect])
        current = _recorded(db, component)
        if current is None:
            current = older_sqlite(db) if older_sqlite is not None and db.dialect == SQLITE else 0
            db.execute("INSERT INTO earmark_schema (component, version) VALUES (?, ?)", (component, current))
    if current > len(scripts):
        raise DatabaseUnavailable(
            f"the database's {component} schema is at version {current}, newer than this release knows "
            f"({len(scripts)}): upgrade Earmark on this machine"
        )
    for version in range(current + 1, len(scripts) + 1):
        with db.writing():
            if (_recorded(db, component) or 0) >= version:
                continue  # another process opening the database applied it meanwhile
            db.executescript(scripts[version - 1])
            db.execute("UPDATE earmark_schema SET version = ? WHERE component = ?", (version, component))


def recorded_versions(db: Database) -> dict[str, int]:
    """The version each component's tables have reached, as `earmark_schema` records it."""
    return {str(name): int(version) for name, version in db.execute("SELECT component, version FROM earmark_schema")}


def _recorded(db: Database, component: str) -> int | None:
    row = db.execute("SELECT version FROM earmark_schema WHERE component = ?", (component,)).fetchone()
    return None if row is None else int(row[0])
