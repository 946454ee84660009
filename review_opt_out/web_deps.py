"""Who is asking: the session, its CSRF token and its role, for every API route.

Sessions are opaque tokens in an HttpOnly, SameSite=Strict cookie. Every request that
changes something must also send the session's CSRF token in `X-CSRF-Token`: no
session is 401, a missing or wrong token is 403, and so is the wrong role.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from review_opt_out import auth
from review_opt_out.export import Exports
from review_opt_out.registry import Registry
from review_opt_out.signin_guard import SignInGuard

SESSION_COOKIE = "earmark_session"


@dataclass(frozen=True)
class AppState:
    """What every route may use; built once in create_app."""

    registry: Registry
    guard: SignInGuard
    failures: auth.FailedSignIns
    on_consent_change: Callable[[], None]
    # Where others on the household's network open the app (e.g. https://kitchen-pi.local:8443/):
    # an invitation link built from the address the owner happened to use (127.0.0.1) would
    # reach nobody else. None when the app serves loopback only.
    share_url: str | None = None
    exports: Exports = field(default_factory=Exports)


def state(request: Request) -> AppState:
    """The app's shared parts."""
    found: AppState = request.app.state.earmark
    return found


def client_of(request: Request) -> str:
    """The peer address, never X-Forwarded-For: a header is the client's claim."""
    return request.client.host if request.client else "unknown"


def _current(request: Request) -> auth.Session:
    found = auth.session(state(request).registry, request.cookies.get(SESSION_COOKIE))
    if found is None:
        raise HTTPException(401, "sign in first")
    if request.method not in ("GET", "HEAD") and request.headers.get("x-csrf-token") != found.csrf_token:
        raise HTTPException(403, "missing or wrong CSRF token")
    return found


def _member(session: Annotated[auth.Session, Depends(_current)]) -> auth.Session:
    if session.kind != "member" or session.household_id is None:
        raise HTTPException(403, "members only")
    return session


def _owner(session: Annotated[auth.Session, Depends(_member)]) -> auth.Session:
    if session.role != "owner":
        raise HTTPException(403, "only an owner of the household can do that")
    return session


def _staff(session: Annotated[auth.Session, Depends(_current)]) -> auth.Session:
    if session.kind != "reviewer":
        raise HTTPException(403, "reviewers only")
    return session


def _reviewer(session: Annotated[auth.Session, Depends(_current)]) -> auth.Session:
    # Separate duties: an admin manages reviewers and does not hear clips.
    if session.kind != "reviewer" or session.role != "reviewer":
        raise HTTPException(403, "reviewers only")
    return session


def _review_admin(session: Annotated[auth.Session, Depends(_current)]) -> auth.Session:
    if session.kind != "reviewer" or session.role != "admin":
        raise HTTPException(403, "review admins only")
    return session


# Module level on purpose: FastAPI resolves these annotations from module globals.
AnySession = Annotated[auth.Session, Depends(_current)]
Member = Annotated[auth.Session, Depends(_member)]
Owner = Annotated[auth.Session, Depends(_owner)]
Staff = Annotated[auth.Session, Depends(_staff)]
Reviewer = Annotated[auth.Session, Depends(_reviewer)]
ReviewAdmin = Annotated[auth.Session, Depends(_review_admin)]
Shared = Annotated[AppState, Depends(state)]
