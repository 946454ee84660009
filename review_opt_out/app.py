"""The companion app and the reviewers' page: the web server, its pages and sign-in.

The routes live in `household_api` (a household's consent, recordings and members) and
`review_api` (reviewers and their admins); who may call which is in `web_deps`; what
every response carries and which Host names are answered, in `web_guard`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from importlib import resources
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from pipeline.errors import TextWithNul
from review_opt_out import auth, export_api, household_api, proof_api, review_api
from review_opt_out.registry import Registry
from review_opt_out.signin_guard import Refusal, SignInGuard, SignInLimits
from review_opt_out.web_deps import SESSION_COOKIE, AnySession, AppState, client_of
from review_opt_out.web_guard import LOOPBACK_HOSTS, protect

STATIC_TYPES = {
    "common.js": "text/javascript",
    "app.js": "text/javascript",
    "app.css": "text/css",
    "review.js": "text/javascript",
}


class SignIn(BaseModel):
    """Credentials."""

    model_config = ConfigDict(extra="forbid")

    login: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=200)


def _static(name: str) -> str:
    return resources.files("review_opt_out").joinpath(f"static/{name}").read_text(encoding="utf-8")


def create_app(
    registry: Registry,
    on_consent_change: Callable[[], None] | None = None,
    secure_cookies: bool = False,
    allowed_hosts: Sequence[str] = LOOPBACK_HOSTS,
    limits: SignInLimits | None = None,
    share_url: str | None = None,
) -> FastAPI:
    """Build the app around a registry; `on_consent_change` wakes the MQTT publisher.

    `allowed_hosts` are the names the app answers to (the Host header): a page served
    under any other name, e.g. by DNS rebinding, gets 400. `share_url` is the address
    others on the network open it at, for the links it makes (invitations).
    """
    failures = auth.FailedSignIns(registry)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        failures.flush()

    # No /docs, /redoc or /openapi.json: the API's shape is nobody's business but the pages'.
    app = FastAPI(
        title="Earmark companion",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        redirect_slashes=False,
        lifespan=lifespan,
    )
    guard = SignInGuard(limits)
    app.state.earmark = AppState(registry, guard, failures, on_consent_change or (lambda: None), share_url)
    protect(app, allowed_hosts, hsts=secure_cookies)

    @app.exception_handler(TextWithNul)
    async def refuse_nul(_request: Request, _err: TextWithNul) -> JSONResponse:
        # Whatever field carried it, on either database: a clear 422, not a server error.
        return JSONResponse({"detail": "text may not contain NUL characters"}, status_code=422)

    def start_session(kind: str, body: SignIn, request: Request, response: Response) -> dict[str, Any]:
        signed = auth.guarded_sign_in(registry, guard, failures, kind, body.login, body.password, client_of(request))
        if isinstance(signed, Refusal):
            raise HTTPException(
                429, auth.locked_out_message(signed), headers={"Retry-After": str(signed.retry_after_seconds)}
            )
        if signed is None:
            raise HTTPException(401, "Wrong email or password." if kind == "member" else "Wrong name or password.")
        token, session = signed
        response.set_cookie(
            SESSION_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=secure_cookies,
            max_age=auth.SESSION_HOURS * 3600,
        )
        return {"csrf_token": session.csrf_token, "kind": kind, "role": session.role}

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return _static("index.html")

    @app.get("/review", response_class=HTMLResponse)
    def review_page() -> str:
        return _static("review.html")

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC_TYPES:
            raise HTTPException(404, "no such file")
        return Response(_static(name), media_type=STATIC_TYPES[name])

    @app.post("/api/login")
    def login(body: SignIn, request: Request, response: Response) -> dict[str, Any]:
        return start_session("member", body, request, response)

    @app.post("/api/review/login")
    def review_login(body: SignIn, request: Request, response: Response) -> dict[str, Any]:
        return start_session("reviewer", body, request, response)

    @app.post("/api/logout")
    def logout(request: Request, response: Response, _session: AnySession) -> dict[str, bool]:
        auth.sign_out(registry, request.cookies.get(SESSION_COOKIE, ""))
        response.delete_cookie(SESSION_COOKIE)
        return {"ok": True}

    app.include_router(household_api.router)
    app.include_router(proof_api.router)
    app.include_router(export_api.router)
    app.include_router(review_api.router)
    return app
