"""Schema versions: one runner for both engines, and SQLite databases older releases left."""

from __future__ import annotations

import re
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from pipeline import clip_schema
from pipeline.clip_schema import open_database
from pipeline.database import SQLITE, Database, WriterLock
from pipeline.errors import DatabaseUnavailable
from pipeline.schema_versions import recorded_versions
from pipeline.store import SqlClipStore
from review_opt_out import registry_schema
from review_opt_out.registry import Registry
from tests.conftest import REPO
from tests.review_helpers import open_both

OLDER = REPO / "tests" / "fixtures" / "older_sqlite"
NEWEST = {"clip_store": len(clip_schema.SQLITE_VERSIONS), "registry": len(registry_schema.SQLITE_VERSIONS)}


def test_both_engines_have_the_same_versions_and_a_fresh_database_reaches_them(tmp_path: Path) -> None:
    from tests.postgres import fresh_database

    assert len(clip_schema.SQLITE_VERSIONS) == len(clip_schema.POSTGRESQL_VERSIONS)
    assert len(registry_schema.SQLITE_VERSIONS) == len(registry_schema.POSTGRESQL_VERSIONS)
    _, lite = open_both(tmp_path / "sqlite")
    with fresh_database() as url:
        _, pg = open_both(tmp_path / "postgresql", url)
        assert recorded_versions(pg.db) == recorded_versions(lite.db) == NEWEST == {"clip_store": 2, "registry": 5}
        pg.close()


@pytest.mark.parametrize("release", ["f04b7e7", "fabe370", "89c86c9"])
def test_a_database_an_older_release_left_upgrades_to_the_fresh_schema(tmp_path: Path, release: str) -> None:
    _, fresh = open_both(tmp_path / "fresh")
    older = _older_database(tmp_path / "older", release)
    upgraded = Registry(older)
    assert recorded_versions(upgraded.db) == NEWEST
    assert layout(upgraded.db) == layout(fresh.db)


def test_the_first_release_s_rows_come_through_its_upgrade(tmp_path: Path) -> None:
    # Its clips had no receipt time (the store time stands in) and '' for no audio; who
    # joined through a link never proved the address; reviewers and households get the
    # defaults of the columns added since.
    clip = str(uuid.uuid4())
    old = _older_database(tmp_path, "f04b7e7")
    with sqlite3.connect(old / "earmark.sqlite3") as db:
        db.execute(
            "INSERT INTO clips VALUES (?, 'kitchen-1', 'h1', '2026-11-27T08:00:00.000000+00:00', "
            "'2026-11-27T08:00:02.000000+00:00', 1.5, 'lights on', 'silence', 'complete', 0, 'alexa', '0.1', 1, 1, '')",
            (clip,),
        )
        db.execute("INSERT INTO households VALUES ('h1', 'The Parks', 1, 1, NULL, 1, '2026-11-27T07:00:00+00:00')")
        db.execute("INSERT INTO members VALUES ('m-ana', 'h1', 'ana@example.org', 'Ana', 'hash-a')")
        db.execute("INSERT INTO members VALUES ('m-cy', 'h1', 'cy@example.org', 'Cy', 'hash-c')")
        db.execute("INSERT INTO reviewers VALUES ('r-1', 'rita', 'reviewer', 'hash-r')")
        db.execute("INSERT INTO review_considered VALUES (?)", (clip,))
        db.execute(
            "INSERT INTO audit_log VALUES (1, '2026-11-27T07:30:00+00:00', 'm-cy', 'member.join', 'h1', '{}', ?, ?)",
            ("0" * 64, "x"),
        )
    db.close()
    registry = Registry(old)
    rows = registry.db.execute("SELECT received_at, stored_at, review_blocked, audio_path, audio_bytes FROM clips")
    assert rows.fetchall() == [("2026-11-27T08:00:02.000000+00:00",) * 2 + (None, None, None)]
    members = registry.db.execute("SELECT member_id, role, email_status FROM members ORDER BY member_id").fetchall()
    assert members == [("m-ana", "owner", "verified"), ("m-cy", "owner", "unverified")]
    assert registry.household("h1").time_zone == "UTC"
    assert registry.db.execute("SELECT verdict FROM review_considered").fetchall() == [("unknown",)]
    [reviewer] = registry.reviewers()
    assert (reviewer["name"], reviewer["created_by"]) == ("rita", None)
    store = SqlClipStore(old)
    stored = store.get(uuid.UUID(clip))
    assert stored is not None and stored.transcript == "lights on" and stored.audio_bytes is None
    store.close()


def test_an_older_database_is_mapped_once(tmp_path: Path) -> None:
    # Its state is read at the first open only: then earmark_schema says, whatever the layout.
    old = _older_database(tmp_path, "89c86c9")
    Registry(old).close()
    with sqlite3.connect(old / "earmark.sqlite3") as db:
        db.execute("PRAGMA user_version = 1")  # would be the first release's clips if asked again
    db.close()
    registry = Registry(old)
    assert recorded_versions(registry.db) == NEWEST
    assert "received_at" in {row[1] for row in registry.db.execute("PRAGMA table_info(clips)")}


def test_several_processes_opening_a_new_database_at_once_apply_each_version_once(
    tmp_path: Path, database: str | None
) -> None:
    errors: list[BaseException] = []
    opened: list[Registry] = []
    start = threading.Barrier(4)

    def open_one() -> None:
        try:
            start.wait(timeout=10)
            opened.append(Registry(tmp_path, database=database))
        except BaseException as err:  # reported by the test below
            errors.append(err)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and len(opened) == 4
    assert recorded_versions(opened[0].db) == NEWEST
    for registry in opened:
        registry.close()


def test_a_database_newer_than_this_release_is_refused(tmp_path: Path, database: str | None) -> None:
    store, registry = open_both(tmp_path, database)
    with registry.transaction() as db:
        db.execute("UPDATE earmark_schema SET version = 99 WHERE component = 'clip_store'")
    registry.close()
    store.close()
    with pytest.raises(DatabaseUnavailable, match="clip_store schema is at version 99, newer than this release"):
        open_database(tmp_path, database)


def test_a_sqlite_script_runs_inside_the_callers_transaction(tmp_path: Path) -> None:
    # sqlite3's own executescript would COMMIT first: a failed version would stay half applied.
    db = Database(SQLITE, sqlite3.connect(tmp_path / "x.sqlite3", isolation_level=None), WriterLock(tmp_path))
    with pytest.raises(sqlite3.OperationalError), db.writing():
        db.executescript("CREATE TABLE a (x TEXT DEFAULT ';');\n-- a comment; with a semicolon\nCREATE TABLE a (y);")
    assert db.execute("SELECT name FROM sqlite_master").fetchall() == []
    db.close()


def _older_database(data_dir: Path, release: str) -> Path:
    """A data directory holding the SQLite database `release` left (tests/fixtures/older_sqlite)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(data_dir / "earmark.sqlite3") as db:
        db.executescript((OLDER / f"{release}.sql").read_text())
    db.close()
    return data_dir


def layout(db: Database) -> dict[str, Any]:
    """What a SQLite schema is, whatever text made it: each table's columns (type, NOT NULL,
    default, key), CHECKs, foreign keys and indexes; each index's and trigger's statement."""
    found: dict[str, Any] = {}
    for name, sql in db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall():
        indexes = db.execute(f"PRAGMA index_list({name})").fetchall()
        found[f"table {name}"] = (
            [tuple(row[1:]) for row in db.execute(f"PRAGMA table_xinfo({name})")],
            _checks(sql),
            [tuple(row[2:]) for row in db.execute(f"PRAGMA foreign_key_list({name})")],
            sorted((row[2], row[3], [c[2] for c in db.execute(f"PRAGMA index_info('{row[1]}')")]) for row in indexes),
        )
    for kind, name, sql in db.execute("SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', 'trigger')"):
        if sql is not None:
            found[f"{kind} {name}"] = re.sub(r"\s+", " ", sql.replace("IF NOT EXISTS ", ""))
    found["user_version"] = db.execute("PRAGMA user_version").fetchone()[0]
    return found


def _checks(sql: str) -> list[str]:
    """A CREATE TABLE's CHECK constraints, whitespace aside."""
    checks = []
    for match in re.finditer(r"CHECK\s*\(", sql):
        depth, end = 0, match.end() - 1
        for end in range(match.end() - 1, len(sql)):
            depth += {"(": 1, ")": -1}.get(sql[end], 0)
            if depth == 0:
                break
        checks.append(re.sub(r"\s+", " ", sql[match.end() - 1 : end + 1]))
    return sorted(checks)
