"""Reviewer and admin accounts: created by an admin, activated by their person."""

from __future__ import annotations

import secrets
from typing import Any

from review_opt_out import audit
from review_opt_out.errors import NotFound, ReviewError
from review_opt_out.registry_core import (
    ACTIVATION_TIME,
    RegistryCore,
    _sha256,
)


class ReviewerAccounts(RegistryCore):
    """Reviewer and admin accounts."""

    def add_reviewer(self, name: str, password_hash: str, role: str = "reviewer", actor: str = "operator") -> str:
        """An account with a password the operator set on the server (`earmark review add-reviewer`:
        the first admin); returns its id (ReviewError if the name is taken). Admins use invite_reviewer."""
        return self._insert_reviewer(name, role, actor, password_hash, None, client="server")

    def invite_reviewer(self, name: str, role: str, actor: str, client: str) -> tuple[str, str]:
        """An account that cannot sign in until its person activates it: (id, one-time activation token).

        Only the token's SHA-256 is stored; it works once, within ACTIVATION_HOURS.
        """
        token = secrets.token_urlsafe(32)
        return self._insert_reviewer(name, role, actor, "", token, client=client), token

    def _insert_reviewer(
        self, name: str, role: str, actor: str, password_hash: str, token: str | None, client: str
    ) -> str:
        if role not in ("reviewer", "admin"):
            raise ReviewError(f"a reviewer's role is reviewer or admin, not {role!r}")
        if not name.strip() or len(name) > 100:
            raise ReviewError("a reviewer's name must be 1-100 characters")
        reviewer_id = secrets.token_hex(8)
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM reviewers WHERE name = ?", (name,)).fetchone():
                raise ReviewError(f"a reviewer named {name!r} already exists")
            expires = None if token is None else (self._now() + ACTIVATION_TIME).isoformat()
            db.execute(
                "INSERT INTO reviewers VALUES (?, ?, ?, ?, ?, ?, ?)",
                (reviewer_id, name, role, password_hash, actor, None if token is None else _sha256(token), expires),
            )
            audit.append(
                db, actor, "reviewer.create", reviewer_id, role=role, created_by=actor, activation=token is not None,
                client=client,
            )  # fmt: skip
        return reviewer_id

    def reviewer_activation(self, token: str) -> dict[str, str]:
        """The name and role an activation link is for, or NotFound if it is unknown, used or expired."""
        with self.reading() as db:
            row = db.execute(
                "SELECT name, role FROM reviewers WHERE activation_hash = ? AND activation_expires_at > ?",
                (_sha256(token), self._now().isoformat()),
            ).fetchone()
        if row is None:
            raise NotFound("this activation link is unknown, used or expired; ask an admin for a new account")
        return {"name": row[0], "role": row[1]}

    def activate_reviewer(self, token: str, password_hash: str, client: str) -> str:
        """Set the password the person chose; the link is spent. Returns the account's id."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT reviewer_id, created_by FROM reviewers WHERE activation_hash = ? AND activation_expires_at > ?",
                (_sha256(token), self._now().isoformat()),
            ).fetchone()
            if row is None:
                raise NotFound("this activation link is unknown, used or expired; ask an admin for a new account")
            db.execute(
                "UPDATE reviewers SET password_hash = ?, activation_hash = NULL, activation_expires_at = NULL "
                "WHERE reviewer_id = ?",
                (password_hash, row[0]),
            )
            # With the creating admin and the address: an activation by the admin who holds the link
            # shows as the same address soon after the creation entry.
            audit.append(db, row[0], "reviewer.activate", row[0], created_by=row[1], client=client)
        return str(row[0])

    def reviewer_role(self, reviewer_id: str) -> str | None:
        """'reviewer' or 'admin', or None if there is no such account (any more)."""
        with self.reading() as db:
            row = db.execute("SELECT role FROM reviewers WHERE reviewer_id = ?", (reviewer_id,)).fetchone()
        return None if row is None else str(row[0])

    def reviewers(self) -> list[dict[str, Any]]:
        """Every reviewer account, with how many clips each has open and submitted."""
        with self.reading() as db:
            rows = db.execute(
                "SELECT r.reviewer_id, r.name, r.role, "
                "(SELECT count(*) FROM assignments a WHERE a.reviewer_id = r.reviewer_id AND a.status = 'open'), "
                "(SELECT count(*) FROM assignments a WHERE a.reviewer_id = r.reviewer_id AND a.status = 'submitted'), "
                "r.password_hash <> '', COALESCE(c.name, r.created_by) "
                "FROM reviewers r LEFT JOIN reviewers c ON c.reviewer_id = r.created_by ORDER BY r.name"
            ).fetchall()
        return [
            {"id": r[0], "name": r[1], "role": r[2], "open": r[3], "submitted": r[4], "activated": bool(r[5]),
             "created_by": r[6]}
            for r in rows
        ]  # fmt: skip

    def remove_reviewer(self, reviewer_id: str, actor: str) -> None:
        """Delete a reviewer account: its sessions end and its open assignments are revoked."""
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM reviewers WHERE reviewer_id = ?", (reviewer_id,)).fetchone() is None:
                raise NotFound("no such reviewer")
            db.execute("DELETE FROM sessions WHERE kind = 'reviewer' AND principal_id = ?", (reviewer_id,))
            db.execute(
                "UPDATE assignments SET status = 'revoked' WHERE reviewer_id = ? AND status = 'open'", (reviewer_id,)
            )
            db.execute("DELETE FROM reviewers WHERE reviewer_id = ?", (reviewer_id,))
            audit.append(db, actor, "reviewer.remove", reviewer_id)
