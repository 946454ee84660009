"""The companion app's API for a household: consent, recordings, members, password.

A member only ever sees their own household: no route takes a household id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from review_opt_out import auth, members
from review_opt_out.errors import CountChanged, NotFound, ReviewError
from review_opt_out.registry import Channel, RecordingFilter, Registry
from review_opt_out.signin_guard import Refusal
from review_opt_out.web_deps import Member, Owner, Shared, client_of

router = APIRouter()

EXPLANATION = (
    "People at Earmark listen to a small sample of recordings to make speech recognition better. "
    "If you turn this on, recordings made from now on may be among them; reviewers never see your name, "
    "household, device or location. If you turn it off, nobody reviews your recordings, and any already "
    "waiting for review are taken out at once. Turning it back on never brings those back."
)
PAGE_SIZE = 20


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConsentBody(_Body):
    """The one switch."""

    review_allowed: bool


class SettingsBody(_Body):
    """Retention settings."""

    retention: Literal["3_months", "18_months", "never"] | None = None
    keep_recordings: bool | None = None


class Selection(_Body):
    """Which recordings: a speaker and/or a date range, or `all` of them."""

    device_id: str | None = Field(None, max_length=64)
    since: datetime | None = None
    until: datetime | None = None
    heard: bool = False
    all: bool = False

    def filter(self) -> RecordingFilter:
        """The registry's filter; an empty selection without `all` is refused, never 'everything'."""
        empty = self.device_id is None and self.since is None and self.until is None and not self.heard
        if empty and not self.all:
            raise HTTPException(422, "choose a speaker or dates, or all recordings")
        return RecordingFilter(self.device_id, self.since, self.until, self.heard)


class DeleteBody(Selection):
    """A confirmed delete: the count the member was shown."""

    expected_count: int = Field(ge=0)


class PasswordChange(_Body):
    """The current password, and the new one."""

    current_password: str = Field(min_length=1, max_length=200)
    new_password: str = Field(min_length=1, max_length=200)


class InviteBody(_Body):
    """Who to invite, and as what."""

    email: str = Field(min_length=3, max_length=254)
    name: str = Field(min_length=1, max_length=100)
    role: members.Role = members.Role.MEMBER


class InvitationToken(_Body):
    """An invitation link's token."""

    token: str = Field(min_length=20, max_length=100)


class AcceptBody(InvitationToken):
    """An invitation accepted with a new password."""

    password: str = Field(min_length=1, max_length=200)


def _consent_view(registry: Registry, household_id: str) -> dict[str, Any]:
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


def _refused(refusal: Refusal) -> HTTPException:
    return HTTPException(
        429, auth.locked_out_message(refusal), headers={"Retry-After": str(refusal.retry_after_seconds)}
    )


@router.get("/api/me")
def me(session: Member, shared: Shared) -> dict[str, Any]:
    """The signed-in member, their household's consent and settings."""
    view = _consent_view(shared.registry, session.household_id or "")
    return {"csrf_token": session.csrf_token, "member_id": session.principal_id, "role": session.role, **view}


@router.put("/api/consent")
def set_consent(body: ConsentBody, session: Member, shared: Shared) -> dict[str, Any]:
    """Turn review on or off (off also empties the household's part of the pool at once)."""
    shared.registry.set_consent(session.household_id or "", body.review_allowed, session.principal_id, Channel.APP)
    shared.on_consent_change()
    return _consent_view(shared.registry, session.household_id or "")


@router.get("/api/consent/history")
def history(session: Member, shared: Shared) -> list[dict[str, Any]]:
    """Every consent change, newest first."""
    return [change.__dict__ for change in shared.registry.history(session.household_id or "")]


@router.put("/api/settings")
def settings(body: SettingsBody, session: Member, shared: Shared) -> dict[str, Any]:
    """Retention and "don't keep my recordings"."""
    household = session.household_id or ""
    if body.retention is not None:
        shared.registry.set_retention(household, body.retention, session.principal_id)
    if body.keep_recordings is not None:
        shared.registry.set_keep_recordings(household, body.keep_recordings, session.principal_id)
    return _consent_view(shared.registry, household)


@router.get("/api/recordings")
def recordings(
    session: Member,
    shared: Shared,
    device_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: str | None = None,
    limit: int = PAGE_SIZE,
    heard: bool = False,
) -> dict[str, Any]:
    """A page of the household's recordings, newest first, with the total the filter matches.

    `after` is the previous page's `next`: pages stay put while new recordings arrive.
    """
    if not 1 <= limit <= 100:
        raise HTTPException(422, "limit is 1-100")
    cursor = None
    if after is not None:
        captured, _, clip_id = after.partition("|")
        if not captured or not clip_id:
            raise HTTPException(422, "after must be a page's `next`")
        cursor = (captured, clip_id)
    registry, household = shared.registry, session.household_id or ""
    which = RecordingFilter(device_id, since, until, heard)
    items = registry.recordings(household, which, after=cursor, limit=limit + 1)
    more = len(items) > limit
    items = items[:limit]
    return {
        "items": items,
        "total": registry.count_recordings(household, which),
        "next": f"{items[-1]['captured_at']}|{items[-1]['id']}" if more else None,
        "devices": registry.household_devices(household),
        "heard": registry.heard_summary(household),
    }


@router.get("/api/recordings/{clip_id}/audio")
def recording_audio(clip_id: str, session: Member, shared: Shared) -> Response:
    """One of the household's own recordings."""
    try:
        wav = shared.registry.recording_audio(session.household_id or "", clip_id)
    except NotFound as err:
        raise HTTPException(404, "no such recording") from err
    return Response(wav, media_type="audio/wav")


@router.delete("/api/recordings/{clip_id}")
def delete_one(clip_id: str, session: Member, shared: Shared) -> dict[str, int]:
    """Delete one recording (the page asks first)."""
    deleted = shared.registry.delete(session.household_id or "", session.principal_id, clip_id=clip_id)
    if not deleted:
        raise HTTPException(404, "no such recording")
    return {"deleted": deleted}


@router.post("/api/recordings/count")
def count(body: Selection, session: Member, shared: Shared) -> dict[str, int]:
    """How many recordings a delete of this selection would remove: the page shows it first."""
    return {"count": shared.registry.count_recordings(session.household_id or "", body.filter())}


@router.post("/api/recordings/delete")
def delete_many(body: DeleteBody, session: Member, shared: Shared) -> dict[str, int]:
    """Delete a selection, only if it still matches the count the member confirmed."""
    which = body.filter()
    try:
        deleted = shared.registry.delete(
            session.household_id or "",
            session.principal_id,
            since=which.since,
            until=which.until,
            device_id=which.device_id,
            expected_count=body.expected_count,
        )
    except CountChanged as err:
        raise HTTPException(409, f"{err.count} recordings match now, not {body.expected_count}; confirm again") from err
    return {"deleted": deleted}


@router.put("/api/me/password")
def change_password(body: PasswordChange, request: Request, session: Member, shared: Shared) -> dict[str, bool]:
    """A new password; every other session of this member ends."""
    try:
        members.check_password(body.new_password)
    except ReviewError as err:
        raise HTTPException(422, str(err)) from err
    right = auth.guarded_password_check(
        shared.registry, shared.guard, shared.failures, session.principal_id, body.current_password, client_of(request)
    )
    if isinstance(right, Refusal):
        raise _refused(right)
    if not right:
        raise HTTPException(403, "That is not your current password.")
    new_hash = shared.guard.check(lambda: auth.hash_password(body.new_password))
    members.set_password_hash(shared.registry, session.principal_id, new_hash, keep_session=session.token_hash)
    return {"ok": True}


@router.get("/api/members")
def list_members(session: Member, shared: Shared) -> list[dict[str, Any]]:
    """The household's members and open invitations."""
    return members.listing(shared.registry, session.household_id or "")


@router.post("/api/members/invite")
def invite(body: InviteBody, session: Owner, shared: Shared) -> dict[str, Any]:
    """A one-time link for someone to join the household (owners only)."""
    try:
        token = members.invite(
            shared.registry, session.household_id or "", body.email, body.name, body.role, session.principal_id
        )
    except ReviewError as err:
        raise HTTPException(422, str(err)) from err
    path = f"/#invite={token}"
    made: dict[str, Any] = {"invite_path": path, "valid_days": members.INVITE_DAYS}
    if shared.share_url is not None:
        made["invite_url"] = shared.share_url.rstrip("/") + path
    return made


@router.delete("/api/members/{member_id}")
def remove_member(member_id: str, session: Owner, shared: Shared) -> dict[str, bool]:
    """Remove a member; their sessions end at once (owners only; the last owner stays)."""
    try:
        members.remove(shared.registry, session.household_id or "", member_id, session.principal_id)
    except NotFound as err:
        raise HTTPException(404, "no such member") from err
    except ReviewError as err:
        raise HTTPException(409, str(err)) from err
    return {"ok": True}


class WithdrawBody(_Body):
    """Whose open invitation to cancel."""

    email: str = Field(min_length=3, max_length=254)


@router.post("/api/members/withdraw-invitation")
def withdraw(body: WithdrawBody, session: Owner, shared: Shared) -> dict[str, bool]:
    """Cancel an open invitation (owners only)."""
    try:
        members.withdraw_invitation(shared.registry, session.household_id or "", body.email, session.principal_id)
    except NotFound as err:
        raise HTTPException(404, "no such invitation") from err
    return {"ok": True}


@router.post("/api/invitation")
def invitation(body: InvitationToken, shared: Shared) -> dict[str, str]:
    """What an invitation link is for (no session needed: the token is the secret)."""
    try:
        return members.invitation(shared.registry, body.token)
    except NotFound as err:
        raise HTTPException(404, str(err)) from err


@router.post("/api/invitation/accept")
def accept(body: AcceptBody, shared: Shared) -> dict[str, str]:
    """Join the household with a new password; then sign in as usual. Whether other
    households know the address plays no part (members.py)."""
    try:
        members.check_password(body.password)
        info = members.invitation(shared.registry, body.token)
        password_hash = shared.guard.check(lambda: auth.hash_password(body.password))
        members.accept(shared.registry, body.token, password_hash)
    except NotFound as err:
        raise HTTPException(404, str(err)) from err
    except ReviewError as err:
        raise HTTPException(422, str(err)) from err
    return {"email": info["email"]}
