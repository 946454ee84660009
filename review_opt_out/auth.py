"""Members, reviewers and their sessions: argon2 passwords, opaque session tokens, CSRF tokens."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from review_opt_out import audit, members
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
    role: str  # a member's owner/member, a reviewer's reviewer/admin
    token_hash: str


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


def add_member(
    registry: Registry,
    household_id: str,
    email: str,
    name: str,
    password: str,
    role: members.Role = members.Role.OWNER,
    actor: str = "admin",
) -> str:
    """A household member who can sign in to the companion app (the password checked for length)."""
    members.checked_email(email)  # named first: the address is what a typo usually breaks
    members.check_password(password)
    return members.insert_member(registry, household_id, email, name, hash_password(password), role, actor)


# An address may have an account in several households (members.py), and sign-in tries the
# password on each: at least this many checks run whatever the count, so the time taken
# tells a guesser nothing about how many households hold an address (up to this many).
MEMBER_CHECKS = 2


def _verify(stored: str | None, password: str) -> bool:
    # An account without a password (a reviewer not activated yet) costs the same argon2
    # work as any other and never matches.
    try:
        return _HASHER.verify(stored or _DUMMY_HASH, password) and bool(stored)
    except (VerificationError, InvalidHashError):
        return False


def is_current_password(registry: Registry, household_id: str, email: str, password: str) -> bool:
    """Whether `password` is the member's own now (an operator's check, on the server: no guard)."""
    with registry.reading() as db:
        row = db.execute(
            "SELECT password_hash FROM members WHERE household_id = ? AND email = ?",
            (household_id, members.checked_email(email)),
        ).fetchone()
    return _verify(None if row is None else str(row[0]), password)


def _first_match(stored: list[str], password: str, checks: int) -> int | None:
    """The index of the first hash `password` matches; every hash (and dummies up to
    `checks`) is tried, so the work does not depend on which one matched."""
    matches = [_verify(hashed, password) for hashed in stored]
    for _ in range(checks - len(stored)):
        _verify(None, password)
    return matches.index(True) if True in matches else None


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
            # The operator-verified account first: a person in two households with one
            # password signs in to the one an operator vouched for.
            rows = db.execute(
                "SELECT member_id, password_hash, household_id FROM members WHERE email = ? "
                "ORDER BY email_status = 'verified' DESC, member_id",
                (login.lower(),),
            ).fetchall()
        else:
            rows = db.execute(
                "SELECT reviewer_id, password_hash, NULL FROM reviewers WHERE name = ?", (login,)
            ).fetchall()
    checks = MEMBER_CHECKS if kind == "member" else 1
    matched = check(lambda: _first_match([r[1] for r in rows], password, checks))
    if matched is None:
        return None
    row = rows[matched]
    rehashed = check(lambda: hash_password(password)) if _HASHER.check_needs_rehash(row[1]) else None
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    expires = (datetime.now(UTC) + timedelta(hours=SESSION_HOURS)).isoformat()
    with registry.transaction() as db:
        if rehashed is not None:
            table, key = ("members", "member_id") if kind == "member" else ("reviewers", "reviewer_id")
            db.execute(f"UPDATE {table} SET password_hash = ? WHERE {key} = ?", (rehashed, row[0]))  # noqa: S608 - fixed names
        db.execute(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?)", (members.token_hash(token), kind, row[0], csrf, expires)
        )
        audit.append(db, row[0], f"{kind}.sign_in", row[2] or "-")
    found = session(registry, token)
    if found is None:  # pragma: no cover - the row was just written
        return None
    return token, found


_LOCKED_OUT = {
    "account_and_client": "Too many wrong passwords for this account from this device.",
    "client": "Too many wrong passwords from this device.",
    "account": "Too many wrong passwords for this account, from several places.",
}


def locked_out_message(refusal: Refusal) -> str:
    """What the person signing in is told: that it is a lock-out, not a wrong password, and until when."""
    minutes = max(1, -(-refusal.retry_after_seconds // 60))
    return f"{_LOCKED_OUT[refusal.scope]} Sign-in is paused; try again in {minutes} minute{'s' * (minutes != 1)}."


def _accounts(registry: Registry, login: str) -> int:
    with registry.reading() as db:
        return int(db.execute("SELECT count(*) FROM members WHERE email = ?", (login.lower(),)).fetchone()[0])


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
        # A right password clears this client's count for the address, unless other
        # households hold accounts for it too: then signing in to one's own made-up account
        # would reset the count of guesses at someone else's.
        succeeded = signed is not None
        guard.settle(admitted, succeeded, clear=succeeded and (kind != "member" or _accounts(registry, login) == 1))
    if signed is None:
        failures.record(kind, "wrong_password")
    return signed


def guarded_password_check(
    registry: Registry, guard: SignInGuard, failures: FailedSignIns, member_id: str, password: str, client: str
) -> bool | Refusal:
    """Whether this is the member's current password, behind the same guessing limits as sign-in."""
    with registry.reading() as db:
        row = db.execute("SELECT email, password_hash FROM members WHERE member_id = ?", (member_id,)).fetchone()
    stored = None if row is None else str(row[1])
    admitted = guard.admit(f"member:{'' if row is None else row[0]}", client)
    if isinstance(admitted, Refusal):
        failures.record("member", "refused")
        return admitted
    right = False
    try:
        right = guard.check(lambda: _verify(stored, password))
    finally:
        guard.settle(admitted, right)
    if not right:
        failures.record("member", "wrong_password")
    return right


def session(registry: Registry, token: str | None) -> Session | None:
    """The live session for a cookie value, or None."""
    if not token:
        return None
    hashed = members.token_hash(token)
    with registry.reading() as db:
        row = db.execute(
            "SELECT s.kind, s.principal_id, m.household_id, s.csrf_token, s.expires_at, COALESCE(m.role, r.role) "
            "FROM sessions s "
            "LEFT JOIN members m ON s.kind = 'member' AND m.member_id = s.principal_id "
            "LEFT JOIN reviewers r ON s.kind = 'reviewer' AND r.reviewer_id = s.principal_id WHERE s.token_hash = ?",
            (hashed,),
        ).fetchone()
    if row is None or row[5] is None or datetime.fromisoformat(row[4]) < datetime.now(UTC):
        return None
    return Session(row[0], row[1], row[2], row[3], row[5], hashed)


def sign_out(registry: Registry, token: str) -> None:
    """End a session."""
    with registry.transaction() as db:
        db.execute("DELETE FROM sessions WHERE token_hash = ?", (members.token_hash(token),))
