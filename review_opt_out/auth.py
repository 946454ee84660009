"""Members, reviewers and their sessions: argon2 passwords, opaque session tokens, CSRF tokens."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from review_opt_out import audit
from review_opt_out.errors import ReviewError
from review_opt_out.registry import Registry
from review_opt_out.signin_guard import Checker, Refusal, SignInGuard

# OWASP's argon2id floor (19 MiB, 2 passes, 1 lane): 38 ms a check on this 2-core x86-64
# (`scripts/bench_signin.py`), a few times that on a Pi 4. The library default (64 MiB,
# 4 lanes) took 158 ms here and, with no bound on concurrent checks, 2.1 GB of server
# memory under 60 concurrent guesses. Hashes made with other
# parameters still verify and are rehashed at the next sign-in.
T = TypeVar("T")
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verifying against this keeps a wrong email as slow as a wrong password.
_DUMMY_HASH = _HASHER.hash("not a password anyone has")
SESSION_HOURS = 12


@dataclass(frozen=True)
class Session:
    """Who is signed in."""

    kind: str  # "member" or "reviewer"
    principal_id: str
    household_id: str | None  # members only
    csrf_token: str


class FailedSignIns:
    """Wrong passwords and refused sign-ins go to the audit log as counts, one entry per
    kind per `interval_seconds` at most: guessing cannot grow the append-only log without
    bound, and the log still shows that it happened and how much."""

    def __init__(self, registry: Registry, interval_seconds: float = 60.0, clock: Any = time.monotonic) -> None:
        self._registry = registry
        self._interval = interval_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._tally: dict[tuple[str, str], int] = {}
        self._since = clock()

    def record(self, kind: str, outcome: str) -> None:
        """Count one `wrong_password` or `refused` sign-in; write the tally if it is due."""
        with self._lock:
            self._tally[(kind, outcome)] = self._tally.get((kind, outcome), 0) + 1
        self.flush_if_due()

    def flush_if_due(self) -> None:
        """Write the tally once `interval_seconds` have passed since the last write."""
        if self._clock() - self._since >= self._interval:
            self.flush()

    def flush(self) -> None:
        """Write what has been counted, one entry per kind, and start counting afresh."""
        with self._lock:
            tally, self._tally, self._since = self._tally, {}, self._clock()
        kinds = sorted({kind for kind, _outcome in tally})
        if not kinds:
            return
        with self._registry.transaction() as db:
            for kind in kinds:
                audit.append(
                    db,
                    "anonymous",
                    f"{kind}.sign_in_failed",
                    "-",
                    wrong_password=tally.get((kind, "wrong_password"), 0),
                    refused=tally.get((kind, "refused"), 0),
                )


def hash_password(password: str) -> str:
    """An argon2id hash."""
    return _HASHER.hash(password)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_member(registry: Registry, household_id: str, email: str, name: str, password: str) -> str:
    """A household member who can sign in to the companion app."""
    member_id = secrets.token_hex(8)
    with registry.transaction() as db:
        if db.execute("SELECT 1 FROM members WHERE email = ?", (email.lower(),)).fetchone():
            raise ReviewError(f"a member with email {email} already exists")
        db.execute(
            "INSERT INTO members VALUES (?, ?, ?, ?, ?)",
            (member_id, household_id, email.lower(), name, hash_password(password)),
        )
        audit.append(db, "admin", "member.create", household_id, member_id=member_id)
    return member_id


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def _here(work: Callable[[], T]) -> T:
    return work()


def sign_in(
    registry: Registry, kind: str, login: str, password: str, check: Checker = _here
) -> tuple[str, Session] | None:
    """Check a password; on success create a session and return (token, session).

    `check` runs the argon2 work (SignInGuard.check puts it on the guard's few threads).
    """
    with registry.reading() as db:
        if kind == "member":
            row = db.execute(
                "SELECT member_id, password_hash, household_id FROM members WHERE email = ?", (login.lower(),)
            ).fetchone()
        else:
            row = db.execute(
                "SELECT reviewer_id, password_hash, NULL FROM reviewers WHERE name = ?", (login,)
            ).fetchone()
    stored = row[1] if row else None
    if not check(lambda: _verify(stored, password)) or row is None:
        return None
    rehashed = check(lambda: hash_password(password)) if _HASHER.check_needs_rehash(row[1]) else None
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    expires = (datetime.now(UTC) + timedelta(hours=SESSION_HOURS)).isoformat()
    with registry.transaction() as db:
        if rehashed is not None:
            table, key = ("members", "member_id") if kind == "member" else ("reviewers", "reviewer_id")
            db.execute(f"UPDATE {table} SET password_hash = ? WHERE {key} = ?", (rehashed, row[0]))  # noqa: S608 - fixed names
        db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)", (_token_hash(token), kind, row[0], csrf, expires))
        audit.append(db, row[0], f"{kind}.sign_in", row[2] or "-")
    return token, Session(kind, row[0], row[2], csrf)


def guarded_sign_in(
    registry: Registry, guard: SignInGuard, failures: FailedSignIns, kind: str, login: str, password: str, client: str
) -> tuple[str, Session] | Refusal | None:
    """`sign_in` behind the guessing limits: a Refusal before any check, None for a wrong
    password, or (token, session)."""
    admitted = guard.admit(f"{kind}:{login.lower()}", client)
    if isinstance(admitted, Refusal):
        failures.record(kind, "refused")
        return admitted
    signed = None
    try:
        signed = sign_in(registry, kind, login, password, check=guard.check)
    finally:
        guard.settle(admitted, signed is not None)
    if signed is None:
        failures.record(kind, "wrong_password")
    return signed


def session(registry: Registry, token: str | None) -> Session | None:
    """The live session for a cookie value, or None."""
    if not token:
        return None
    with registry.reading() as db:
        row = db.execute(
            "SELECT s.kind, s.principal_id, m.household_id, s.csrf_token, s.expires_at FROM sessions s "
            "LEFT JOIN members m ON s.kind = 'member' AND m.member_id = s.principal_id WHERE s.token_hash = ?",
            (_token_hash(token),),
        ).fetchone()
    if row is None or datetime.fromisoformat(row[4]) < datetime.now(UTC):
        return None
    return Session(row[0], row[1], row[2], row[3])


def sign_out(registry: Registry, token: str) -> None:
    """End a session."""
    with registry.transaction() as db:
        db.execute("DELETE FROM sessions WHERE token_hash = ?", (_token_hash(token),))
