"""Typed events the front end emits to its subscribers.

Audio stays binary (`bytes`); `summary()` gives the JSON-safe view the CLI prints,
which never includes audio.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from firmware.segmenter import EndReason
from firmware.state import DeviceState


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    audio_time_seconds: float = Field(description="position in the input stream when this happened")

    def summary(self) -> dict[str, Any]:
        """A JSON-safe dict without audio content."""
        return self.model_dump(mode="json")


class StateChanged(_Event):
    """The device moved between states."""

    type: Literal["state_changed"] = "state_changed"
    old: DeviceState
    new: DeviceState


class WakeDetected(_Event):
    """A wake word crossed its threshold."""

    type: Literal["wake_detected"] = "wake_detected"
    utterance_id: UUID
    wake_word: str
    score: float


class UtteranceAudio(_Event):
    """Audio of the utterance in progress: the pre-roll first, then each frame as it arrives."""

    type: Literal["utterance_audio"] = "utterance_audio"
    utterance_id: UUID
    sequence: int
    audio: bytes = Field(repr=False)

    def summary(self) -> dict[str, Any]:
        """Size only; audio content is never printed."""
        return {**self.model_dump(mode="json", exclude={"audio"}), "audio_bytes": len(self.audio)}


class SpeechStarted(_Event):
    """The user started speaking after the wake word."""

    type: Literal["speech_started"] = "speech_started"
    utterance_id: UUID


class SpeechEnded(_Event):
    """The request is over."""

    type: Literal["speech_ended"] = "speech_ended"
    utterance_id: UUID
    reason: EndReason


class UtteranceReady(_Event):
    """The whole utterance, pre-roll included, for consumers that want it in one piece."""

    type: Literal["utterance_ready"] = "utterance_ready"
    utterance_id: UUID
    wake_word: str
    end_reason: EndReason
    duration_seconds: float
    audio: bytes = Field(repr=False)

    def summary(self) -> dict[str, Any]:
        """Size only; audio content is never printed."""
        return {**self.model_dump(mode="json", exclude={"audio"}), "audio_bytes": len(self.audio)}


FrontEndEvent = Annotated[
    StateChanged | WakeDetected | UtteranceAudio | SpeechStarted | SpeechEnded | UtteranceReady,
    Field(discriminator="type"),
]
