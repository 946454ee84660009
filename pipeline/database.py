"""The cloud's one database, SQLite or PostgreSQL, chosen by one URL setting.

The clip store and the consent registry write the same SQL to either engine through
`Database`: `?` parameters (rewritten to `%s` for psycopg), ISO-8601 UTC text for time,
0/1 integers for flags. What differs is kept here, under names a reader can find:

* **One writer at a time, on both engines.** `writing()` is the only way to write in a
  transaction. SQLite: `BEGIN IMMEDIATE` plus a `flock` every process's writers queue on
  (`WriterLock`). PostgreSQL: READ COMMITTED plus `pg_advisory_xact_lock(WRITER_LOCK_KEY)`
  taken as the transaction's first statement. Every writer takes that lock, so writers
  run one after another and, in READ COMMITTED, each statement after the lock sees every
  transaction that committed before it: a consent change, the pool purge, the
  revocations, the audit entry and the outbox row commit as one, and no sampler or clip
  save can interleave with them - the same guarantee as SQLite's single writer.
  (REPEATABLE READ or SERIALIZABLE would be *wrong* here without retries: their snapshot
  is taken by the lock statement itself, before the wait, so it would miss the very
  transaction that was waited for.) Readers never wait for it.
* **No write outside `writing()`** (refused, on both engines): an autocommit write would
  take the engine's lock outside the queue. And no SQLite statement outlives `execute`
  (`Rows` reads its result whole, as psycopg does): a statement read part way keeps its
  connection in a read transaction whose `BEGIN IMMEDIATE` SQLite refuses at once.
* **Insertion order of clips** (the sampler's high-water mark): SQLite's `rowid`, a
  `clip_seq` identity column on PostgreSQL. Both grow in commit order because every
  insert holds the writer lock.
* **One clock** (`now()`): receipt, decision and consent times come from the database,
  so workers and the registry on several machines order events alike.
* **`cutoff(retention_days)`** (in the eligibility rule): a Python function on SQLite,
  an SQL function on PostgreSQL reading the caller's clock from a session setting, so
  both follow the registry's clock.
* **Schema versions:** one runner for both engines (`pipeline.schema_versions`): each
  component's numbered SQL files per engine, applied in order under the writer lock, the
  version reached recorded in `earmark_schema`. A SQLite database an older release left
  (no `earmark_schema` yet) is mapped onto the versions it already has, once, by its
  component's one function for that.
* **Scripts** (`executescript`): PostgreSQL takes several statements in one call; SQLite's
  driver would COMMIT first, so a script is run there one statement at a time, inside the
  caller's transaction.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from pipeline.errors import DatabaseUnavailable, TextWithNul
from pipeline.sqlite_engine import Rows, sqlite_statements
from pipeline.sqlite_engine import WriterLock as WriterLock  # re-exported: where Database is made

if TYPE_CHECKING:
    import psycopg

_LOGGER = logging.getLogger(__name__)

SQLITE: Final = "sqlite"
POSTGRESQL: Final = "postgresql"
# pg_advisory_xact_lock's key for Earmark's writers ("EARM" in ASCII).
WRITER_LOCK_KEY: Final = 0x4541524D
_NOW_SETTING: Final = "earmark.now"
# Each attempt waits SQLite's busy timeout (10 s) for a lock held outside the writer lock.
_SQLITE_BEGIN_ATTEMPTS: Final = 6
_WRITE_STATEMENT: Final = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER)\b", re.IGNORECASE)
# One round trip: the transaction, then the writer lock. The lock wait is exempt from a
# role's statement or lock timeout (a writer waits its turn, as on SQLite), which applies
# again to the transaction's own statements.
_BEGIN_POSTGRESQL: Final = (
    "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0; "
    f"SELECT pg_advisory_xact_lock({WRITER_LOCK_KEY}); "
    "SET LOCAL statement_timeout = DEFAULT; SET LOCAL lock_timeout = DEFAULT"
)


class Cursor(Protocol):
    """What both drivers' cursors give back."""

    @property
    def rowcount(self) -> int:
        """Rows the statement changed."""

    def fetchone(self) -> Any:
        """The next row, or None."""

    def fetchall(self) -> list[Any]:
        """The remaining rows."""

    def __iter__(self) -> Iterator[Any]:
        """The remaining rows, one at a time."""


def is_postgresql(url: str | None) -> bool:
    """Whether a database URL names PostgreSQL (None and "sqlite" are the embedded default)."""
    return url is not None and url.startswith(("postgresql://", "postgres://"))


def check_url(url: str | None) -> str | None:
    """A database URL the cloud can use (None: SQLite in the data directory), or DatabaseUnavailable."""
    if url is None or url == SQLITE or is_postgresql(url):
        return None if url == SQLITE else url
    raise DatabaseUnavailable(
        f"database {redacted(url)!r}: use 'sqlite' (the default, in the data directory) or postgresql://…"
    )


def redacted(url: str) -> str:
    """Where a database URL points, without its password (in the URL or its parameters)."""
    if not is_postgresql(url):
        return url.split(":", 1)[0][:20] + ":…"
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(url)
    except psycopg.Error:  # unparseable: shown as nothing but its scheme
        return "postgresql://…"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


def _password(url: str) -> str | None:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        password = conninfo_to_dict(url).get("password")
    except psycopg.Error:
        return None
    return None if password is None else str(password)


@lru_cache(maxsize=512)
def _to_psycopg(sql: str) -> str:
    # Earmark's SQL has no '?' inside a string literal, so every '?' is a parameter. psycopg
    # reads '%' as the start of a placeholder: a literal one (LIKE 'x%') is doubled.
    return sql.replace("%", "%%").replace("?", "%s")


class Database:
    """One connection, to either engine, with Earmark's write discipline."""

    def __init__(
        self,
        dialect: Literal["sqlite", "postgresql"],
        connection: sqlite3.Connection | psycopg.Connection[Any],
        writer_lock: WriterLock | None = None,
        reopen: Callable[[], psycopg.Connection[Any]] | None = None,
    ) -> None:
        self.dialect = dialect
        self._conn = connection
        self._writer = writer_lock
        self._reopen = reopen
        self._in_transaction = False
        self._clock: Callable[[], datetime] | None = None
        self._write_lock = threading.RLock()  # one connection may serve several threads

    @property
    def clip_order(self) -> str:
        """The column that orders clips by insertion (the sampler's high-water mark)."""
        return "rowid" if self.dialect == SQLITE else "clip_seq"

    @property
    def errors(self) -> tuple[type[Exception], ...]:
        """The driver's error classes (for the few places that must tolerate one)."""
        if self.dialect == SQLITE:
            return (sqlite3.Error,)
        import psycopg

        return (psycopg.Error,)

    @property
    def value_errors(self) -> tuple[type[Exception], ...]:
        """The driver's errors a statement's values cause (a constraint, a bad value), as
        opposed to the connection's or the server's."""
        if self.dialect == SQLITE:
            return (sqlite3.IntegrityError, sqlite3.DataError)
        import psycopg

        return (psycopg.IntegrityError, psycopg.DataError)

    def _ensure_open(self) -> None:
        """A PostgreSQL connection the server or the network dropped is opened again, but
        only between transactions: a transaction it broke has failed as a whole."""
        if self._reopen is None or self._in_transaction or isinstance(self._conn, sqlite3.Connection):
            return
        with self._write_lock:
            if self._conn.broken:
                _LOGGER.warning("the database connection was lost; opening it again")
                self._conn = self._reopen()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement (autocommit outside `writing()`)."""
        _refuse_nul(params)
        self._refuse_write_outside_transaction(sql)
        if isinstance(self._conn, sqlite3.Connection):
            return Rows(self._conn.execute(sql, params))
        self._ensure_open()
        if self._clock is not None and "cutoff(" in sql:
            self._conn.execute("SELECT set_config(%s, %s, false)", (_NOW_SETTING, self._clock().isoformat()))
        return self._conn.execute(_to_psycopg(sql), params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement for each row of parameters."""
        rows = list(rows)
        for row in rows:
            _refuse_nul(row)
        self._refuse_write_outside_transaction(sql)
        if isinstance(self._conn, sqlite3.Connection):
            self._conn.executemany(sql, rows)
            return
        self._ensure_open()
        with self._conn.cursor() as cursor:
            cursor.executemany(_to_psycopg(sql), rows)

    def _refuse_write_outside_transaction(self, sql: str) -> None:
        # A write outside `writing()` would hold SQLite's write lock without the writer
        # lock every other writer queues on: they would then wait in SQLite's busy loop,
        # and give up after its timeout, with "database is locked".
        if not self._in_transaction and _WRITE_STATEMENT.match(sql):
            raise RuntimeError(f"a write outside writing(): {sql.split(None, 3)[:3]}")

    def executescript(self, script: str) -> None:
        """Run several statements without parameters (schema), inside `writing()`'s transaction if in one."""
        if isinstance(self._conn, sqlite3.Connection):
            # Not sqlite3's executescript: it would COMMIT the caller's transaction first.
            for statement in sqlite_statements(script):
                self._conn.execute(statement)
        else:
            self._conn.execute(script)

    @contextlib.contextmanager
    def writing(self) -> Iterator[Database]:
        """One write transaction, alone among Earmark's writers in every process (see the module)."""
        with self._write_lock, self._writer.held() if self._writer is not None else contextlib.nullcontext():
            if self._in_transaction:  # SQLite refuses a nested BEGIN; PostgreSQL would commit early
                raise RuntimeError("a write transaction inside a write transaction")
            self._ensure_open()
            self._in_transaction = True
            try:
                try:
                    if self.dialect == SQLITE:
                        self._begin_sqlite()
                    else:
                        self._begin_postgresql()
                    yield self
                except BaseException:
                    # Also when BEGIN or the lock failed (cancelled, say): a transaction left
                    # open and aborted would fail every later statement on this connection.
                    with contextlib.suppress(*self.errors):
                        self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            finally:
                self._in_transaction = False

    def _begin_sqlite(self) -> None:
        # Every Earmark writer queues on the writer lock, which this one holds: SQLite's
        # lock can then only be held by something outside that queue (an operator's sqlite3
        # shell, a backup). A request waits it out, in the busy timeout's steps, rather
        # than being lost; the wait is logged, since it should never happen.
        for attempt in range(1, _SQLITE_BEGIN_ATTEMPTS + 1):
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as err:
                if attempt == _SQLITE_BEGIN_ATTEMPTS or "locked" not in str(err):
                    raise
                _LOGGER.warning("the database is locked by a writer outside Earmark's queue; waiting (%d)", attempt)

    def _begin_postgresql(self) -> None:
        import psycopg

        for attempt in (1, 2):
            try:
                self._conn.execute(_BEGIN_POSTGRESQL)
                return
            except psycopg.OperationalError:
                # A connection dropped while idle is found out here, before anything of the
                # transaction ran: open it again and begin once more.
                if attempt == 2 or self._reopen is None or not self._conn.broken:  # type: ignore[union-attr]
                    raise
                _LOGGER.warning("the database connection was lost; opening it again")
                self._conn = self._reopen()

    def now(self) -> datetime:
        """The database's clock: the one clock every worker and the registry agree on.

        PostgreSQL's `clock_timestamp()`, so workers on several machines stamp receipt and
        decision times alike; SQLite is one file on one machine, whose clock it is.
        """
        if isinstance(self._conn, sqlite3.Connection):
            return datetime.now(UTC)
        self._ensure_open()
        (moment,) = self._conn.execute("SELECT clock_timestamp()").fetchone() or (None,)
        if not isinstance(moment, datetime):
            raise DatabaseUnavailable("the database did not tell its time")
        return moment.astimezone(UTC)

    def install_cutoff(self, now: Callable[[], datetime]) -> None:
        """`cutoff(retention_days)`: the receipt time before which a clip is past retention, by `now`."""
        if isinstance(self._conn, sqlite3.Connection):

            def cutoff(retention_days: int | None) -> str:
                if retention_days is None:
                    return "0000"  # kept forever: before every receipt time
                return utc_text(now() - timedelta(days=retention_days))

            self._conn.create_function("cutoff", 1, cutoff, deterministic=False)
        else:
            self._clock = now  # read by the SQL function from a session setting, set before each use

    def close(self) -> None:
        """Close the connection (and the writer lock's file)."""
        self._conn.close()
        if self._writer is not None:
            self._writer.close()


def _refuse_nul(params: Sequence[Any]) -> None:
    for value in params:
        if isinstance(value, str) and "\x00" in value:
            raise TextWithNul("text with a NUL character")


def placeholders(values: Sized) -> str:
    """One `?` per value, for `IN (…)` or a row of `VALUES (…)`."""
    return ", ".join("?" * len(values))


def utc_text(moment: datetime) -> str:
    """The database's timestamp text: UTC, fixed precision, so text order is time order."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="microseconds")


def _psycopg() -> Any:
    """psycopg, or a one-line DatabaseUnavailable saying how to install it."""
    try:
        import psycopg
    except ImportError as err:
        raise DatabaseUnavailable("PostgreSQL needs psycopg: pip install 'earmark[cloud]'") from err
    return psycopg


def database_name(url: str) -> str:
    """The PostgreSQL database a URL names (the user's name when it names none, as libpq does)."""
    psycopg = _psycopg()
    try:
        parts = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error as err:
        raise DatabaseUnavailable(f"database URL {redacted(url)!r} cannot be read: {str(err).strip()}") from err
    return str(parts.get("dbname") or parts.get("user") or "")


def connect_postgresql(url: str) -> Database:
    """Open PostgreSQL (autocommit; transactions only through `writing()`)."""
    _psycopg()
    import psycopg

    def open_connection() -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(url, autocommit=True, connect_timeout=10, application_name="earmark")
        except psycopg.Error as err:
            # The driver's message names host and reason; the password stays out of it.
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            password = _password(url)
            if password:
                reason = reason.replace(password, "***")
            raise DatabaseUnavailable(f"cannot open {redacted(url)}: {reason}") from err
        # Timestamps are UTC text throughout; nothing may depend on the server's own zone.
        conn.execute("SET TIME ZONE 'UTC'")
        return conn

    return Database(POSTGRESQL, open_connection(), reopen=open_connection)
