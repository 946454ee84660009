"""The reviewers' API: reviewers hear and correct clips; review admins manage reviewers.

A reviewer only ever sees pseudonymous clip ids, and only clips the one eligibility rule
allows at that moment. Duties are separate: an admin cannot fetch clips, a reviewer
cannot manage accounts.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from review_opt_out import auth, members
from review_opt_out.errors import NotFound, ReviewError
from review_opt_out.web_deps import ReviewAdmin, Reviewer, Shared, Staff

router = APIRouter()


class Transcript(BaseModel):
    """A reviewer's corrected transcript."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=5000)


class NewReviewer(BaseModel):
    """An account an admin creates."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    role: Literal["reviewer", "admin"] = "reviewer"
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
def add_reviewer(body: NewReviewer, session: ReviewAdmin, shared: Shared) -> dict[str, str]:
    """A new reviewer or admin account (admins only)."""
    try:
        members.check_password(body.password)
        password_hash = shared.guard.check(lambda: auth.hash_password(body.password))
        reviewer_id = shared.registry.add_reviewer(body.name, password_hash, body.role, actor=session.principal_id)
    except ReviewError as err:
        raise HTTPException(422, str(err)) from err
    return {"id": reviewer_id}


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
