"""The household's "Download my data": start (rate-limited, audited), download once, progress."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse

from review_opt_out import export
from review_opt_out.errors import NotFound
from review_opt_out.web_deps import Member, Shared, client_of

router = APIRouter()


@router.post("/api/export")
def start(request: Request, session: Member, shared: Shared) -> dict[str, Any]:
    """Start an export: the page then opens its link and polls its progress."""
    try:
        started = shared.exports.start(
            shared.registry, session.household_id or "", session.principal_id, client_of(request)
        )
    except export.ExportRefused as err:
        raise HTTPException(429, str(err), headers={"Retry-After": _seconds_until(err.retry_at)}) from err
    return {"id": started.export_id, "recordings": started.recordings, "url": f"/api/export/{started.export_id}"}


@router.get("/api/export/{export_id}")
def download(export_id: str, session: Member, shared: Shared) -> StreamingResponse:
    """The zip, written as it is sent (one download per start)."""
    try:
        taken = shared.exports.take(export_id, session.household_id or "")
    except NotFound as err:
        raise HTTPException(404, str(err)) from err
    name = f"earmark-data-{datetime.now(UTC):%Y-%m-%d}.zip"
    return StreamingResponse(
        export.stream(shared.registry, taken),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


@router.get("/api/export/{export_id}/progress")
def progress(export_id: str, session: Member, shared: Shared) -> dict[str, Any]:
    """How many recordings the download has written so far."""
    try:
        return shared.exports.progress(export_id, session.household_id or "")
    except NotFound as err:
        raise HTTPException(404, str(err)) from err


def _seconds_until(moment: datetime) -> str:
    return str(max(1, int((moment - datetime.now(UTC)).total_seconds()) + 1))
