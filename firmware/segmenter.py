"""Endpointing: a pure detector that decides when the request after a wake word is over.

It is fed `(chunk_seconds, is_speech)` from a VAD and never reads a clock, so tests drive
it with lists of booleans. Two failure modes shape it:

* webrtcvad calls roughly one in ten frames of silence "speech", even at mode 3. A
  segmenter that restarts its silence timer on any speech frame waits on those blips
  and hangs until the maximum length (the 15-second hang Home Assistant users report).
  Here isolated speech frames during a pause are counted as silence; only a run of at
  least `speech_resume_seconds` of speech restarts the silence timer.
* Loud noise is speech to every VAD mode; `max_utterance_seconds` always ends it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contract.messages import EndReason

__all__ = ["EndReason", "SegmentEnd", "SegmentEvent", "Segmenter", "SegmenterSettings", "SpeechStart"]


class SegmenterSettings(BaseModel):
    """Endpointing timings, in seconds of audio."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    speech_start_seconds: float = Field(0.1, gt=0, le=1.0, description="continuous speech that counts as speech")
    speech_resume_seconds: float = Field(
        0.1, gt=0, le=1.0, description="continuous speech that ends a pause (shorter runs are VAD blips)"
    )
    silence_seconds: float = Field(0.7, gt=0, le=5.0, description="pause after speech that ends the request")
    speech_timeout_seconds: float = Field(
        4.0, gt=0, le=30.0, description="no speech this long after the wake word cancels"
    )
    min_utterance_seconds: float = Field(
        0.5, ge=0, le=10.0, description="a request is never cut shorter than this after speech starts"
    )
    max_utterance_seconds: float = Field(15.0, gt=0, le=120.0, description="hard cap after the wake word")

    @model_validator(mode="after")
    def _ordered(self) -> SegmenterSettings:
        if self.speech_timeout_seconds > self.max_utterance_seconds:
            raise ValueError("speech_timeout_seconds must not exceed max_utterance_seconds")
        return self


@dataclass(frozen=True)
class SpeechStart:
    """Speech began `offset_seconds` after the segmenter started."""

    offset_seconds: float


@dataclass(frozen=True)
class SegmentEnd:
    """The utterance is over at `offset_seconds`, for `reason`."""

    offset_seconds: float
    reason: EndReason


SegmentEvent = SpeechStart | SegmentEnd


class Segmenter:
    """One utterance's endpointing; make a new one per utterance."""

    def __init__(self, settings: SegmenterSettings) -> None:
        self._settings = settings
        self._elapsed_seconds = 0.0
        self._speech_run_seconds = 0.0
        self._speech_started_at: float | None = None
        self._silence_seconds = 0.0
        self._ended: SegmentEnd | None = None

    @property
    def in_speech(self) -> bool:
        """Whether speech has started and the utterance is not over."""
        return self._speech_started_at is not None and self._ended is None

    @property
    def ended(self) -> SegmentEnd | None:
        """The end decision, once made."""
        return self._ended

    def process(self, chunk_seconds: float, is_speech: bool) -> SegmentEvent | None:
        """Account for one VAD frame; return an event when something happens."""
        if self._ended is not None:
            return None
        s = self._settings
        self._elapsed_seconds += chunk_seconds
        self._speech_run_seconds = self._speech_run_seconds + chunk_seconds if is_speech else 0.0

        event: SegmentEvent | None = None
        if self._speech_started_at is None:
            if self._speech_run_seconds >= s.speech_start_seconds - 1e-9:
                self._speech_started_at = self._elapsed_seconds - self._speech_run_seconds
                event = SpeechStart(self._speech_started_at)
            elif self._elapsed_seconds >= s.speech_timeout_seconds - 1e-9:
                return self._end(EndReason.NO_SPEECH)
        else:
            if self._speech_run_seconds >= s.speech_resume_seconds - 1e-9:
                self._silence_seconds = 0.0
            else:
                # A blip shorter than speech_resume_seconds is VAD noise: the pause goes on.
                self._silence_seconds += chunk_seconds
            long_enough = self._elapsed_seconds - self._speech_started_at >= s.min_utterance_seconds - 1e-9
            # Never end inside a speech run: it may be the user resuming, not a blip.
            pause_over = not is_speech and self._silence_seconds >= s.silence_seconds - 1e-9
            if pause_over and long_enough:
                return self._end(EndReason.SILENCE)
        if self._elapsed_seconds >= s.max_utterance_seconds - 1e-9:
            return self._end(EndReason.MAX_LENGTH)
        return event

    def cancel(self, reason: EndReason = EndReason.CANCELLED) -> SegmentEnd | None:
        """End now from outside (a cancel request, mute); None if already over."""
        if self._ended is not None:
            return None
        return self._end(reason)

    def _end(self, reason: EndReason) -> SegmentEnd:
        self._ended = SegmentEnd(self._elapsed_seconds, reason)
        return self._ended
