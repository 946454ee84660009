"""The reviewers' API: reviewers hear and correct clips; review admins manage reviewers.

A reviewer only ever sees pseudonymous clip ids, and only clips the one eligibility rule
allows at that moment. Duties are separate: an admin cannot fetch clips, a reviewer
cannot manage accounts, and an admin never knows a reviewer's password: creating an
account returns a one-time activation link (72 h, only its SHA-256 stored), and the
account cannot sign in until its person opens the link and chooses a password. The
audit log records each account's creation (with the creating admin and their address),
its activation (with the activating address) and every clip served to a reviewer.

What still relies on trusting admins: the link passes through the admin's hands, so an
admin who opens it himself gets a working reviewer account and can hear clips. Nothing
prevents that; the audit only shows it afterwards, as an activation from the creating
admin's address and usually soon after the creation. Two admins are no safeguard either:
each can create accounts alone. The operator who runs `earmark review add-reviewer` on
the server sets that account's password and holds the database anyway.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from review_opt_out import auth, members
from review_opt_out.errors import NotFound, ReviewError
from review_opt_out.registry import ACTIVATION_TIME
from review_opt_out.web_deps import ReviewAdmin, Reviewer, Shared, Staff, client_of

router = APIRouter()


class Transcript(BaseModel):
    """A reviewer's corrected transcript."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=5000)


class NewReviewer(BaseModel):
    """An account an admin creates (no password: its person chooses one)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    role: Literal["reviewer", "admin"] = "reviewer"


class ActivationToken(BaseModel):
    """An activation link's token."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=20, max_length=100)


class Activation(ActivationToken):
    """An account activated with the password its person chose."""

    password: str = Field(min_length=1, max_length=200)


@router.get("/api/review/me")
def whoami(session: Staff) -> dict[str, str]:
    """The signed-in reviewer or admin: what the page shows them."""
    return {"csrf_token": session.csrf_token, "role": session.role, "id": session.principal_id}


@router.get("/api/review/next")
def review_next(session: Reviewer, shared: Shared) -> dict[str, Any]:
    """The reviewer's open clip or a newly assigned one, with the recognizer's text to correct."""
    pseudonym = shared.registry.next_assignment(session.principal_id)
    if pseudonym is None:
        return {"clip": None, "transcript": None}
    try:
        text = shared.registry.assigned_transcript(session.principal_id, pseudonym)
    except NotFound:
        return {"clip": None, "transcript": None}  # withdrawn between the two reads
    return {"clip": pseudonym, "transcript": text}


@router.get("/api/review/clips/{pseudonym}/audio")
def review_audio(pseudonym: str, session: Reviewer, shared: Shared) -> Response:
    """An assigned clip's audio, if it may still be heard."""
    try:
        wav = shared.registry.reviewer_audio(session.principal_id, pseudonym)
    except NotFound as err:
        raise HTTPException(404, "no such clip") from err
    return Response(wav, media_type="audio/wav")


@router.post("/api/review/clips/{pseudonym}/transcript")
def review_submit(pseudonym: str, body: Transcript, session: Reviewer, shared: Shared) -> dict[str, bool]:
    """The corrected transcript of an assigned clip."""
    try:
        shared.registry.submit(session.principal_id, pseudonym, body.text)
    except NotFound as err:
        raise HTTPException(404, "no such clip") from err
    return {"ok": True}


@router.get("/api/review/reviewers")
def list_reviewers(_session: ReviewAdmin, shared: Shared) -> list[dict[str, Any]]:
    """Every reviewer account (admins only)."""
    return shared.registry.reviewers()


@router.post("/api/review/reviewers")
def add_reviewer(body: NewReviewer, request: Request, session: ReviewAdmin, shared: Shared) -> dict[str, Any]:
    """A new reviewer or admin account and its one-time activation link (admins only)."""
    try:
        reviewer_id, token = shared.registry.invite_reviewer(
            body.name, body.role, actor=session.principal_id, client=client_of(request)
        )
    except ReviewError as err:
        raise HTTPException(422, str(err)) from err
    hours = int(ACTIVATION_TIME.total_seconds() // 3600)
    return {"id": reviewer_id, "activation_path": f"/review#activate={token}", "valid_hours": hours}


@router.post("/api/review/activation")
def activation(body: ActivationToken, shared: Shared) -> dict[str, str]:
    """Which account an activation link is for (no session needed: the token is the secret)."""
    try:
        return shared.registry.reviewer_activation(body.token)
    except NotFound as err:
        raise HTTPException(404, str(err)) from err


@router.post("/api/review/activate")
def activate(body: Activation, request: Request, shared: Shared) -> dict[str, str]:
    """Activate an account with the password its person chose; then sign in as usual."""
    try:
        members.check_password(body.password)
        account = shared.registry.reviewer_activation(body.token)
        password_hash = shared.guard.check(lambda: auth.hash_password(body.password))
        shared.registry.activate_reviewer(body.token, password_hash, client_of(request))
    except NotFound as err:
        raise HTTPException(404, str(err)) from err
    except ReviewError as err:
        raise HTTPException(422, str(err)) from err
    return {"name": account["name"]}


@router.delete("/api/review/reviewers/{reviewer_id}")
def remove_reviewer(reviewer_id: str, session: ReviewAdmin, shared: Shared) -> dict[str, bool]:
    """Remove an account: its sessions end and its open clips are withdrawn (admins only, not oneself)."""
    if reviewer_id == session.principal_id:
        raise HTTPException(409, "an admin cannot remove their own account")
    try:
        shared.registry.remove_reviewer(reviewer_id, session.principal_id)
    except NotFound as err:
        raise HTTPException(404, "no such reviewer") from err
    return {"ok": True}
