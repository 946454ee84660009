"""The household's audit proof and the key to check it with (see `audit_proof`)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from review_opt_out import audit_proof
from review_opt_out.errors import ReviewError
from review_opt_out.web_deps import Member, Shared

router = APIRouter()


@router.get("/api/audit/proof")
def proof(session: Member, shared: Shared) -> Response:
    """The household's audit entries under a head signed now, as a file to keep."""
    household_id = session.household_id or ""
    registry = shared.registry
    try:
        with registry.transaction() as db:
            made = audit_proof.household_proof(db, registry.signer, household_id)
    except ReviewError as err:
        raise HTTPException(409, str(err)) from err
    name = f"earmark-audit-proof-{datetime.now(UTC):%Y-%m-%d}.json"
    return Response(
        made.model_dump_json(indent=1),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


@router.get("/api/audit/public-key")
def public_key(session: Member, shared: Shared) -> Response:
    """The consent key's public half (PEM), which proofs are checked with."""
    del session  # members only; the key itself is no secret
    return Response(
        shared.registry.signer.public_pem(),
        media_type="application/x-pem-file",
        headers={"Content-Disposition": 'attachment; filename="earmark-consent-key.pem"'},
    )
