"""The companion app: an HTTP API and the page that uses it, plus the reviewer API.

Sessions are opaque tokens in an HttpOnly, SameSite=Strict cookie. Every request that
changes something must also send the session's CSRF token in `X-CSRF-Token`: no
session is 401, a missing or wrong token is 403. A member only ever sees their own
household; a reviewer only ever sees pseudonymous clip ids.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from review_opt_out import auth
from review_opt_out.errors import NotFound
from review_opt_out.registry import Channel, Registry
from review_opt_out.signin_guard import Refusal, SignInGuard, SignInLimits
from review_opt_out.web_guard import LOOPBACK_HOSTS, protect

_LOGGER = logging.getLogger(__name__)

SESSION_COOKIE = "earmark_session"
EXPLANATION = (
    "People at Earmark listen to a small sample of recordings to make speech recognition better. "
    "If you turn this on, recordings made from now on may be among them; reviewers never see your name, "
    "household, device or location. If you turn it off, nobody reviews your recordings, and any already "
    "waiting for review are taken out at once. Turning it back on never brings those back."
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignIn(_Body):
    """Credentials."""

    login: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=200)


class ConsentBody(_Body):
    """The one switch."""

    review_allowed: bool


class SettingsBody(_Body):
    """Retention settings."""

    retention: Literal["3_months", "18_months", "never"] | None = None
    keep_recordings: bool | None = None


class DeleteBody(_Body):
    """A range of recordings to delete; with neither bound and `all` set, everything."""

    since: datetime | None = None
    until: datetime | None = None
    all: bool = False


class Transcript(_Body):
    """A reviewer's corrected transcript."""

    text: str = Field(max_length=5000)


STATIC_TYPES = {"app.js": "text/javascript", "app.css": "text/css"}


def _static(name: str) -> str:
    return resources.files("review_opt_out").joinpath(f"static/{name}").read_text(encoding="utf-8")


def _current(request: Request) -> auth.Session:
    registry: Registry = request.app.state.registry
    found = auth.session(registry, request.cookies.get(SESSION_COOKIE))
    if found is None:
        raise HTTPException(401, "sign in first")
    if request.method not in ("GET", "HEAD") and request.headers.get("x-csrf-token") != found.csrf_token:
        raise HTTPException(403, "missing or wrong CSRF token")
    return found


def _member(session: Annotated[auth.Session, Depends(_current)]) -> auth.Session:
    if session.kind != "member" or session.household_id is None:
        raise HTTPException(403, "members only")
    return session


def _reviewer(session: Annotated[auth.Session, Depends(_current)]) -> auth.Session:
    if session.kind != "reviewer":
        raise HTTPException(403, "reviewers only")
    return session


# Module level on purpose: FastAPI resolves these annotations from module globals.
AnySession = Annotated[auth.Session, Depends(_current)]
Member = Annotated[auth.Session, Depends(_member)]
Reviewer = Annotated[auth.Session, Depends(_reviewer)]


_LOCKED_OUT = {
    "account_and_client": "Too many wrong passwords for this account from this device.",
    "client": "Too many wrong passwords from this device.",
    "account": "Too many wrong passwords for this account, from several places.",
}


def locked_out_message(refusal: Refusal) -> str:
    """What the person signing in is told: that it is a lock-out, not a wrong password, and until when."""
    minutes = max(1, -(-refusal.retry_after_seconds // 60))
    return f"{_LOCKED_OUT[refusal.scope]} Sign-in is paused; try again in {minutes} minute{'s' * (minutes != 1)}."


def create_app(
    registry: Registry,
    on_consent_change: Callable[[], None] | None = None,
    secure_cookies: bool = False,
    allowed_hosts: Sequence[str] = LOOPBACK_HOSTS,
    limits: SignInLimits | None = None,
) -> FastAPI:
    """Build the app around a registry; `on_consent_change` wakes the MQTT publisher.

    `allowed_hosts` are the names the app answers to (the Host header): a page served
    under any other name, e.g. by DNS rebinding, gets 400.
    """
    failures = auth.FailedSignIns(registry)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        failures.flush()

    # No /docs, /redoc or /openapi.json: the API's shape is nobody's business but the page's.
    app = FastAPI(
        title="Earmark companion",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        redirect_slashes=False,
        lifespan=lifespan,
    )
    app.state.registry = registry
    app.state.failed_sign_ins = failures
    guard = app.state.sign_in_guard = SignInGuard(limits)
    protect(app, allowed_hosts, hsts=secure_cookies)

    def start_session(kind: str, body: SignIn, request: Request, response: Response) -> dict[str, Any]:
        # The peer address, never X-Forwarded-For: a header is the client's claim.
        client = request.client.host if request.client else "unknown"
        signed = auth.guarded_sign_in(registry, guard, failures, kind, body.login, body.password, client)
        if isinstance(signed, Refusal):
            raise HTTPException(
                429, locked_out_message(signed), headers={"Retry-After": str(signed.retry_after_seconds)}
            )
        if signed is None:
            raise HTTPException(401, "Wrong email or password.")
        token, session = signed
        response.set_cookie(
            SESSION_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=secure_cookies,
            max_age=auth.SESSION_HOURS * 3600,
        )
        return {"csrf_token": session.csrf_token, "kind": kind}

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return _static("index.html")

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC_TYPES:
            raise HTTPException(404, "no such file")
        return Response(_static(name), media_type=STATIC_TYPES[name])

    @app.post("/api/login")
    def login(body: SignIn, request: Request, response: Response) -> dict[str, Any]:
        return start_session("member", body, request, response)

    @app.post("/api/logout")
    def logout(request: Request, response: Response, _session: AnySession) -> dict[str, bool]:
        auth.sign_out(registry, request.cookies.get(SESSION_COOKIE, ""))
        response.delete_cookie(SESSION_COOKIE)
        return {"ok": True}

    def consent_view(household_id: str) -> dict[str, Any]:
        household = registry.household(household_id)
        retention = {90: "3_months", 540: "18_months", None: "never"}.get(household.retention_days, "never")
        return {
            "household": household.name,
            "review_allowed": household.review_allowed,
            "consent_version": household.consent_version,
            "explanation": EXPLANATION,
            "retention": retention,
            "keep_recordings": household.keep_recordings,
        }

    @app.get("/api/me")
    def me(session: Member) -> dict[str, Any]:
        return {"csrf_token": session.csrf_token, **consent_view(session.household_id or "")}

    @app.put("/api/consent")
    def set_consent(body: ConsentBody, session: Member) -> dict[str, Any]:
        registry.set_consent(session.household_id or "", body.review_allowed, session.principal_id, Channel.APP)
        if on_consent_change is not None:
            on_consent_change()
        return consent_view(session.household_id or "")

    @app.get("/api/consent/history")
    def history(session: Member) -> list[dict[str, Any]]:
        return [change.__dict__ for change in registry.history(session.household_id or "")]

    @app.put("/api/settings")
    def settings(body: SettingsBody, session: Member) -> dict[str, Any]:
        if body.retention is not None:
            registry.set_retention(session.household_id or "", body.retention, session.principal_id)
        if body.keep_recordings is not None:
            registry.set_keep_recordings(session.household_id or "", body.keep_recordings, session.principal_id)
        return consent_view(session.household_id or "")

    @app.get("/api/recordings")
    def recordings(session: Member) -> list[dict[str, Any]]:
        return registry.recordings(session.household_id or "")

    @app.get("/api/recordings/{clip_id}/audio")
    def recording_audio(clip_id: str, session: Member) -> FileResponse:
        try:
            path = registry.recording_audio_path(session.household_id or "", clip_id)
        except NotFound as err:
            raise HTTPException(404, "no such recording") from err
        return FileResponse(path, media_type="audio/wav")

    @app.delete("/api/recordings/{clip_id}")
    def delete_one(clip_id: str, session: Member) -> dict[str, int]:
        deleted = registry.delete(session.household_id or "", session.principal_id, clip_id=clip_id)
        if not deleted:
            raise HTTPException(404, "no such recording")
        return {"deleted": deleted}

    @app.post("/api/recordings/delete")
    def delete_many(body: DeleteBody, session: Member) -> dict[str, int]:
        if body.since is None and body.until is None and not body.all:
            raise HTTPException(422, "give since/until, or all=true")
        deleted = registry.delete(session.household_id or "", session.principal_id, since=body.since, until=body.until)
        return {"deleted": deleted}

    # -- reviewers ----------------------------------------------------------------------

    @app.post("/api/review/login")
    def review_login(body: SignIn, request: Request, response: Response) -> dict[str, Any]:
        return start_session("reviewer", body, request, response)

    @app.get("/api/review/next")
    def review_next(session: Reviewer) -> dict[str, Any]:
        pseudonym = registry.next_assignment(session.principal_id)
        return {"clip": pseudonym}

    @app.get("/api/review/clips/{pseudonym}/audio")
    def review_audio(pseudonym: str, session: Reviewer) -> FileResponse:
        try:
            path = registry.reviewer_audio_path(session.principal_id, pseudonym)
        except NotFound as err:
            raise HTTPException(404, "no such clip") from err
        return FileResponse(path, media_type="audio/wav", headers={"Cache-Control": "no-store"})

    @app.post("/api/review/clips/{pseudonym}/transcript")
    def review_submit(pseudonym: str, body: Transcript, session: Reviewer) -> dict[str, bool]:
        try:
            registry.submit(session.principal_id, pseudonym, body.text)
        except NotFound as err:
            raise HTTPException(404, "no such clip") from err
        return {"ok": True}

    return app
