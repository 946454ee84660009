"""An append-only, hash-chained audit log.

Each entry's hash covers its content and the previous entry's hash, so altering,
deleting or reordering any entry breaks every hash after it. `earmark audit verify`
recomputes the chain and names the first entry that does not fit.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from pipeline.database import Database

# The table and the triggers that refuse to change or remove an entry, whoever connects, are
# in the registry's schema versions (review_opt_out/migrations/{sqlite,postgresql}/0001.sql).

GENESIS = "0" * 64


def entry_hash(prev_hash: str, seq: int, at: str, actor: str, action: str, subject: str, detail: str) -> str:
    """An entry's chain hash: its content and the hash of the entry before it."""
    material = json.dumps([prev_hash, seq, at, actor, action, subject, detail], separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()


def append(db: Database, actor: str, action: str, subject: str, **detail: Any) -> None:
    """Add an entry; call inside the caller's transaction so the audit and the change commit together."""
    row = db.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev_hash = (row[0] + 1, row[1]) if row else (1, GENESIS)
    at = datetime.now(UTC).isoformat()
    detail_json = json.dumps(detail, sort_keys=True, default=str)
    this_hash = entry_hash(prev_hash, seq, at, actor, action, subject, detail_json)
    db.execute(
        "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, at, actor, action, subject, detail_json, prev_hash, this_hash),
    )


@dataclass(frozen=True)
class Verification:
    """The outcome of recomputing the chain."""

    entries: int
    first_bad_seq: int | None
    problem: str | None

    @property
    def ok(self) -> bool:
        """Whether the whole chain holds."""
        return self.first_bad_seq is None


# An entry's columns, in the order `entry_hash` and the audit proofs take them.
COLUMNS: Final = ("seq", "at", "actor", "action", "subject", "detail", "prev_hash", "hash")


def entries(db: Database) -> list[Any]:
    """Every entry, in order (rows of `COLUMNS`)."""
    return db.execute(f"SELECT {', '.join(COLUMNS)} FROM audit_log ORDER BY seq").fetchall()  # noqa: S608 - constant


def verify(db: Database) -> Verification:
    """Recompute every hash; report the first entry that breaks the chain."""
    return check(entries(db))


def check(rows: list[Any]) -> Verification:
    """The chain of these entries (all of them, in order): the first that breaks it."""
    prev_hash = GENESIS
    expected_seq = 1
    count = 0
    for seq, at, actor, action, subject, detail, stored_prev, stored_hash in rows:
        count += 1
        if seq != expected_seq:
            return Verification(count, expected_seq, f"entry {expected_seq} is missing")
        if stored_prev != prev_hash:
            return Verification(count, seq, f"entry {seq} does not follow entry {seq - 1}")
        if entry_hash(prev_hash, seq, at, actor, action, subject, detail) != stored_hash:
            return Verification(count, seq, f"entry {seq} was altered")
        prev_hash = stored_hash
        expected_seq += 1
    return Verification(count, None, None)
