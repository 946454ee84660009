"""A household's members: who may sign in to the companion app, and who may change who.

Owners invite and remove members; every member sees the household's recordings and its
consent switch. An invitation is a one-time link (a random token, only its hash stored)
that the owner passes on however they like; whoever opens it sets their own password.
A household always keeps at least one owner.

Addresses. Earmark sends no mail, so an invitation proves nothing about the address: the
owner may have opened the link himself. An account made from one is therefore
`unverified`, and an address belongs to no one: each household keeps its own account for
it (one per household), so an account an owner made up for someone else's address sits
in *his* household and never keeps its real owner out. The real owner joins her own
household from her own invitation, with her own password, whatever other households hold
for the address. Sign-in tries the password on every account of the address at the same
argon2 cost (`auth.MEMBER_CHECKS`), so neither it nor invite nor accept tells anyone
whether an address is used elsewhere. Only an operator's add-member is `verified`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from review_opt_out import audit
from review_opt_out.errors import NotFound, ReviewError
from review_opt_out.registry import Registry

MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 200
INVITE_DAYS = 7
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")


class EmailStatus(StrEnum):
    """How far a member's address is known to be theirs."""

    VERIFIED = "verified"  # vouched for by an operator (add-member)
    UNVERIFIED = "unverified"  # from an invitation link: the inviter may have made it up


class Role(StrEnum):
    """What a member may do beyond their own household's recordings and consent."""

    OWNER = "owner"  # also invites and removes members
    MEMBER = "member"


def checked_email(email: str) -> str:
    """The address, lower-cased, or ReviewError naming what is wrong."""
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        raise ReviewError(f"{email!r} is not an email address")
    return email.lower()


def check_password(password: str) -> None:
    """ReviewError unless the password is long enough to resist guessing (and not absurdly long)."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise ReviewError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise ReviewError(f"a password may have at most {MAX_PASSWORD_CHARS} characters")


def token_hash(token: str) -> str:
    """What is stored of a session or invitation token: its SHA-256, never the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def insert_member(
    registry: Registry, household_id: str, email: str, name: str, password_hash: str, role: Role, actor: str
) -> str:
    """A new member of an existing household; ReviewError if it already has the address."""
    email = checked_email(email)
    if not name.strip() or len(name) > 100:
        raise ReviewError("a member's name must be 1-100 characters")
    member_id = secrets.token_hex(8)
    with registry.transaction() as db:
        if db.execute("SELECT 1 FROM households WHERE household_id = ?", (household_id,)).fetchone() is None:
            raise NotFound(f"no household {household_id!r}; create it with add-household first")
        if db.execute("SELECT 1 FROM members WHERE household_id = ? AND email = ?", (household_id, email)).fetchone():
            raise ReviewError(f"household {household_id!r} already has a member with email {email}")
        db.execute(
            "INSERT INTO members (member_id, household_id, email, display_name, password_hash, role) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (member_id, household_id, email, name.strip(), password_hash, role.value),
        )
        audit.append(db, actor, "member.create", household_id, member_id=member_id, role=role.value)
    return member_id


def listing(registry: Registry, household_id: str) -> list[dict[str, Any]]:
    """The household's members and open invitations."""
    now = datetime.now(UTC).isoformat()
    with registry.reading() as db:
        members = db.execute(
            "SELECT member_id, email, display_name, role, email_status FROM members WHERE household_id = ? "
            "ORDER BY display_name",
            (household_id,),
        ).fetchall()
        invited = db.execute(
            "SELECT email, display_name, role, expires_at FROM invitations WHERE household_id = ? AND expires_at > ? "
            "ORDER BY email",
            (household_id, now),
        ).fetchall()
    return [
        {"id": m[0], "email": m[1], "name": m[2], "role": m[3], "email_status": m[4], "invited_until": None}
        for m in members
    ] + [
        {"id": None, "email": i[0], "name": i[1], "role": i[2], "email_status": EmailStatus.UNVERIFIED,
         "invited_until": i[3]}
        for i in invited
    ]  # fmt: skip


def invite(registry: Registry, household_id: str, email: str, name: str, role: Role, actor: str) -> str:
    """A one-time invitation token for `email` (valid INVITE_DAYS days; a new one replaces the old)."""
    email = checked_email(email)
    if not name.strip() or len(name) > 100:
        raise ReviewError("a member's name must be 1-100 characters")
    token = secrets.token_urlsafe(32)
    expires = (datetime.now(UTC) + timedelta(days=INVITE_DAYS)).isoformat()
    # No "already has an account" answer here, and no look-up that would make one branch
    # slower: an owner must not learn who uses Earmark. Accepting does not tell either.
    with registry.transaction() as db:
        db.execute(
            "INSERT INTO invitations VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (household_id, email) DO UPDATE SET "
            "token_hash = excluded.token_hash, "
            "display_name = excluded.display_name, role = excluded.role, expires_at = excluded.expires_at",
            (token_hash(token), household_id, email, name.strip(), role.value, expires),
        )
        audit.append(db, actor, "member.invite", household_id, role=role.value)
    return token


def invitation(registry: Registry, token: str) -> dict[str, str]:
    """What an invitation is for (household name, email, name), or NotFound if unknown, used or expired."""
    with registry.reading() as db:
        row = db.execute(
            "SELECT h.name, i.email, i.display_name FROM invitations i JOIN households h USING (household_id) "
            "WHERE i.token_hash = ? AND i.expires_at > ?",
            (token_hash(token), datetime.now(UTC).isoformat()),
        ).fetchone()
    if row is None:
        raise NotFound("this invitation is unknown, used or expired; ask for a new one")
    return {"household": row[0], "email": row[1], "name": row[2]}


def accept(registry: Registry, token: str, password_hash: str) -> str:
    """Turn an invitation into an unverified member with this password; the token is spent.

    Other households' accounts for the address are neither looked at nor touched; only a
    member of this same household with the address is refused (its owner knows them).
    """
    with registry.transaction() as db:
        row = db.execute(
            "SELECT household_id, email, display_name, role FROM invitations WHERE token_hash = ? AND expires_at > ?",
            (token_hash(token), datetime.now(UTC).isoformat()),
        ).fetchone()
        if row is None:
            raise NotFound("this invitation is unknown, used or expired; ask for a new one")
        household_id, email, name, role = row
        db.execute("DELETE FROM invitations WHERE token_hash = ?", (token_hash(token),))
        if db.execute("SELECT 1 FROM members WHERE household_id = ? AND email = ?", (household_id, email)).fetchone():
            raise ReviewError(f"{email} is already a member of this household: sign in instead")
        member_id = secrets.token_hex(8)
        db.execute(
            "INSERT INTO members (member_id, household_id, email, display_name, password_hash, role, email_status) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (member_id, household_id, email, name, password_hash, role, EmailStatus.UNVERIFIED.value),
        )
        audit.append(db, member_id, "member.join", household_id, role=role)
    return member_id


def remove(registry: Registry, household_id: str, member_id: str, actor: str) -> None:
    """Remove a member and end their sessions; the last owner stays."""
    with registry.transaction() as db:
        row = db.execute(
            "SELECT role FROM members WHERE member_id = ? AND household_id = ?", (member_id, household_id)
        ).fetchone()
        if row is None:
            raise NotFound("no such member")
        owners = db.execute(
            "SELECT count(*) FROM members WHERE household_id = ? AND role = 'owner'", (household_id,)
        ).fetchone()[0]
        if row[0] == Role.OWNER and owners <= 1:
            raise ReviewError("a household keeps at least one owner: invite another owner first")
        db.execute("DELETE FROM sessions WHERE kind = 'member' AND principal_id = ?", (member_id,))
        db.execute("DELETE FROM members WHERE member_id = ?", (member_id,))
        audit.append(db, actor, "member.remove", household_id, member_id=member_id)


def withdraw_invitation(registry: Registry, household_id: str, email: str, actor: str) -> None:
    """Cancel an open invitation of this household."""
    with registry.transaction() as db:
        gone = db.execute(
            "DELETE FROM invitations WHERE household_id = ? AND email = ?", (household_id, email.lower())
        ).rowcount
        if not gone:
            raise NotFound("no such invitation")
        audit.append(db, actor, "member.invite_withdrawn", household_id)


def set_password_hash(registry: Registry, member_id: str, password_hash: str, keep_session: str | None) -> None:
    """Replace a member's password and end every other session of theirs."""
    with registry.transaction() as db:
        household = db.execute("SELECT household_id FROM members WHERE member_id = ?", (member_id,)).fetchone()
        if household is None:
            raise NotFound("no such member")
        db.execute("UPDATE members SET password_hash = ? WHERE member_id = ?", (password_hash, member_id))
        db.execute(
            # Spelled for both engines (PostgreSQL has no `IS NOT ?`): a NULL keep_session keeps none.
            "DELETE FROM sessions WHERE kind = 'member' AND principal_id = ? AND COALESCE(token_hash <> ?, true)",
            (member_id, keep_session),
        )
        audit.append(db, member_id, "member.password_change", household[0])
