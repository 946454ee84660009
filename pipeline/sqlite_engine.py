"""What SQLite needs beyond its driver to keep `Database`'s promises (see `pipeline.database`)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class Rows:
    """A SQLite statement's whole result, read at once (as psycopg's cursors do).

    A statement stepped only part way keeps its connection in a read transaction: the
    connection's next `BEGIN IMMEDIATE` must then upgrade a stale snapshot, which SQLite
    refuses at once with "database is locked" (its busy handler is not even asked), and a
    cursor kept alive by a traceback or a future held that for as long as they lived.
    Read whole, every statement has ended before `execute` returns.
    """

    __slots__ = ("_rows", "rowcount")

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._rows = iter(cursor.fetchall())
        self.rowcount = cursor.rowcount
        cursor.close()

    def fetchone(self) -> Any:
        """The next row, or None."""
        return next(self._rows, None)

    def fetchall(self) -> list[Any]:
        """The remaining rows."""
        return list(self._rows)

    def __iter__(self) -> Iterator[Any]:
        return self._rows


def sqlite_statements(script: str) -> Iterator[str]:
    """A SQLite script's statements, one at a time, as SQLite itself ends them (a `;` in a
    string, a comment or a trigger's body ends none); comments after the last are dropped."""
    start = 0
    for end in (index + 1 for index, char in enumerate(script) if char == ";"):
        if sqlite3.complete_statement(script[start:end]):
            yield script[start:end]
            start = end
    rest = "\n".join(line for line in script[start:].splitlines() if not line.strip().startswith("--"))
    if rest.strip():
        raise ValueError(f"a SQL script ends inside a statement: {rest.strip()[:60]!r}")


class WriterLock:
    """Earmark's writers, in every process sharing the database, take turns in the kernel's
    order rather than SQLite's.

    SQLite makes a writer that finds the database locked sleep and retry (up to 100 ms
    between tries), so a process committing back to back (opt-outs, the sampler) starved
    a clip save for seconds (measured: 3.9 s). A waiter on `flock` is woken the moment
    the lock is released. Held around each write transaction, never while waiting for
    anything else.
    """

    def __init__(self, data_dir: Path) -> None:
        path = data_dir / "earmark.sqlite3.writer-lock"
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Exclusive among Earmark's writers while the block runs."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Release the lock file (again: nothing)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
