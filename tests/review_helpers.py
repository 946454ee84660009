"""Helpers for the consent and review tests: real clip store, real registry, real files."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.store import Clip, SQLiteClipStore
from review_opt_out.registry import Registry


def capture(
    store: SQLiteClipStore, household_id: str, review_allowed: bool, consent_version: int, age_days: float = 0.0
) -> uuid.UUID:
    """Store a clip the way the pipeline does, with the tag a device sent."""
    utterance_id = uuid.uuid4()
    captured = datetime.now(UTC) - timedelta(days=age_days)
    store.save(
        Clip(
            utterance_id=utterance_id,
            device_id=f"dev-{household_id}",
            household_id=household_id,
            capture_started_at=captured,
            stored_at=captured,
            duration_seconds=0.0,
            transcript="turn on the lights",
            end_reason="silence",
            status="complete",
            missing_chunks=0,
            wake_word="alexa",
            firmware_version="test",
            review_allowed=review_allowed,
            consent_version=consent_version,
        ),
        bytes(3200),
    )
    return utterance_id


def open_both(data_dir: Path) -> tuple[SQLiteClipStore, Registry]:
    store = SQLiteClipStore(data_dir)
    return store, Registry(data_dir)
