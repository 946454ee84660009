"""What the clip store keeps and answers, as types: a clip, a start's claim, the
database's answer to it, and the store's interface (which ingest is written against).
Also the one WAV encoding of a clip's audio that the app and reviewers' browsers play.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from contract.audio import CHANNELS, SAMPLE_RATE_HZ, SAMPLE_WIDTH_BYTES
from pipeline.arbitration import ContestRules, Outcome


@dataclass(frozen=True)
class Clip:
    """One stored utterance."""

    utterance_id: UUID
    device_id: str
    household_id: str
    capture_started_at: datetime  # the device's claim, shown to the household
    received_at: datetime  # the cloud's clock when the start arrived: retention and eligibility
    stored_at: datetime
    duration_seconds: float
    transcript: str
    end_reason: str
    status: str
    missing_chunks: int
    wake_word: str
    firmware_version: str
    review_allowed: bool
    consent_version: int
    review_blocked: str | None = None  # why the cloud itself ruled review out, if it did
    audio_bytes: int | None = None  # set by the store: PCM bytes kept, None when no audio was kept


@dataclass(frozen=True)
class StartClaim:
    """What one start message claims, as the utterance ledger records it."""

    utterance_id: UUID
    device_id: str
    household_id: str
    review_allowed: bool
    consent_version: int
    capture_started_at: datetime


@dataclass(frozen=True)
class DeviceAdmission:
    """What the database knows about a start, decided in the transaction that records it."""

    household_id: str | None  # None: the device is not enrolled
    keep_audio: bool
    stored: bool  # the utterance is stored already: what is stored stays as it is
    forgotten: bool = False  # its household deleted it before it was stored: served as a duplicate
    received_at: datetime | None = None  # the database's clock at the utterance's first admitted start
    conflicting: bool = False  # this start's tag or household differs from the first one's
    foreign: bool = False  # the utterance id is another device's
    contest_id: str | None = None  # the household contest it is an entrant of (None: it answers alone)
    outcome: Outcome | None = None  # what that contest decided for it already


class ClipStore(Protocol):
    """What the pipeline needs from a clip store."""

    def admit_start(self, claim: StartClaim, rules: ContestRules | None = None) -> DeviceAdmission:
        """Record a start in the utterance ledger and decide, in that transaction, what it is."""
        ...

    def settle_contest(
        self, utterance_id: UUID, rules: ContestRules, *, spoke: bool, recognized: bool, level_db: float
    ) -> Outcome | None:
        """Report how a contest entrant ended; its outcome if the contest can be decided now."""
        ...

    def contest_outcome(self, utterance_id: UUID, rules: ContestRules | None = None) -> Outcome | None:
        """A contest entrant's outcome (deciding it if it can be, given `rules`)."""
        ...

    def contest_entrants(self, utterance_id: UUID) -> int:
        """How many speakers are in this entrant's contest so far."""
        ...

    def note_conflict(self, utterance_id: UUID) -> None:
        """A second start with another tag was seen: the utterance is never reviewable."""
        ...

    def save(self, clip: Clip, audio: bytes | None) -> bool:
        """Store a clip (and its audio, if kept) atomically; False if it was stored already."""
        ...

    def save_many(self, items: Sequence[tuple[Clip, bytes | None]]) -> list[bool | Exception]:
        """Store several clips in one commit: each one's answer, or its error if it alone failed."""
        ...

    def prune_ledger(self) -> int:
        """Forget ledger entries past LEDGER_LIFETIME (stored clips keep their tag)."""
        ...

    def get(self, utterance_id: UUID) -> Clip | None:
        """A stored clip."""
        ...

    def close(self) -> None:
        """Release the database."""
        ...


def wav_bytes(pcm: bytes) -> bytes:
    """Raw clip PCM as a WAV file (what the app and reviewers' browsers play)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(CHANNELS)
        wav.setsampwidth(SAMPLE_WIDTH_BYTES)
        wav.setframerate(SAMPLE_RATE_HZ)
        wav.writeframes(pcm)
    return out.getvalue()
