"""Helpers for the consent and review tests: real clip store, real registry, real files."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.store import Clip, SqlClipStore
from review_opt_out.registry import Registry
from review_opt_out.signing import create_key


def make_clip(**changes: object) -> Clip:
    """A clip as the pipeline would build it; override any field."""
    now = datetime.now(UTC)
    clip = Clip(
        utterance_id=uuid.uuid4(),
        device_id="kitchen-1",
        household_id="h-42",
        capture_started_at=now,
        received_at=now,
        stored_at=now,
        duration_seconds=0.0,
        transcript="turn on the lights",
        end_reason="silence",
        status="complete",
        missing_chunks=0,
        wake_word="alexa",
        firmware_version="test",
        review_allowed=True,
        consent_version=2,
    )
    return replace(clip, **changes)  # type: ignore[arg-type]


def capture(
    store: SqlClipStore,
    household_id: str,
    review_allowed: bool,
    consent_version: int,
    age_days: float = 0.0,
    device_id: str | None = None,
) -> uuid.UUID:
    """Store a clip the way the pipeline does, with the tag a device sent."""
    captured = datetime.now(UTC) - timedelta(days=age_days)
    clip = make_clip(
        device_id=device_id or f"dev-{household_id}",
        household_id=household_id,
        capture_started_at=captured,
        received_at=captured,
        stored_at=captured,
        review_allowed=review_allowed,
        consent_version=consent_version,
    )
    store.save(clip, bytes(3200))
    return clip.utterance_id


def open_both(data_dir: Path, database: str | None = None) -> tuple[SqlClipStore, Registry]:
    """The clip store and the registry on one data directory (and database: None is SQLite
    in it), as `earmark review setup` leaves it."""
    create_key(data_dir)
    store = SqlClipStore(data_dir, database=database)
    return store, Registry(data_dir, database=database)


def two_households(data_dir: Path, database: str | None = None) -> tuple[SqlClipStore, Registry]:
    """`open_both` with households h1 (member ana@example.org) and h2 (bo@example.org),
    each member's password "correct horse"."""
    from review_opt_out.auth import add_member

    store, registry = open_both(data_dir, database)
    for household, email in (("h1", "ana@example.org"), ("h2", "bo@example.org")):
        registry.create_household(household, household.upper())
        add_member(registry, household, email, email.split("@")[0], "correct horse")
    return store, registry
