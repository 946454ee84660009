"""Members, reviewers and their sessions: argon2 passwords, opaque session tokens, CSRF tokens."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from review_opt_out import audit
from review_opt_out.errors import ReviewError
from review_opt_out.registry import Registry

_HASHER = PasswordHasher()
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


class SignInLimiter:
    """Slows password guessing: after `max_failures` wrong passwords for one login within
    `window_seconds`, that login is refused until the window has passed. In memory, per
    process: it bounds guessing through one server, not a distributed attack."""

    def __init__(self, max_failures: int = 5, window_seconds: float = 900.0, clock: Any = time.monotonic) -> None:
        self._max = max_failures
        self._window = window_seconds
        self._clock = clock
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str) -> list[float]:
        cutoff = self._clock() - self._window
        recent = [t for t in self._failures.get(key, []) if t > cutoff]
        self._failures[key] = recent
        return recent

    def blocked(self, key: str) -> bool:
        """Whether this login is locked out now."""
        with self._lock:
            return len(self._recent(key)) >= self._max

    def failed(self, key: str) -> None:
        """Count a wrong password."""
        with self._lock:
            self._recent(key).append(self._clock())

    def succeeded(self, key: str) -> None:
        """Forget the failures of a login that got in."""
        with self._lock:
            self._failures.pop(key, None)


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


def sign_in(registry: Registry, kind: str, login: str, password: str) -> tuple[str, Session] | None:
    """Check a password; on success create a session and return (token, session)."""
    with registry.reading() as db:
        if kind == "member":
            row = db.execute(
                "SELECT member_id, password_hash, household_id FROM members WHERE email = ?", (login.lower(),)
            ).fetchone()
        else:
            row = db.execute(
                "SELECT reviewer_id, password_hash, NULL FROM reviewers WHERE name = ?", (login,)
            ).fetchone()
    if not _verify(row[1] if row else None, password) or row is None:
        with registry.transaction() as db:
            audit.append(db, "anonymous", f"{kind}.sign_in_failed", "-")
        return None
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    expires = (datetime.now(UTC) + timedelta(hours=SESSION_HOURS)).isoformat()
    with registry.transaction() as db:
        db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)", (_token_hash(token), kind, row[0], csrf, expires))
        audit.append(db, row[0], f"{kind}.sign_in", row[2] or "-")
    return token, Session(kind, row[0], row[2], csrf)


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
