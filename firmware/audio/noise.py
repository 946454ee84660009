"""Noise suppression and automatic gain on the microphone (WebRTC's, from pywebrtc-audio).

Both are off by default because measurement said so: on the wake-word report's sets in
pink noise, household babble and far-field (`scripts/bench_noise.py`, docs/figures.md),
suppression kept no more wake words for the default detection anywhere, and gain control
kept more only on clean speech while losing most in noise. They stay as settings for a
room the sets do not cover (a fan, an air conditioner); they run after the echo
canceller, which needs the raw microphone.
"""

from __future__ import annotations

import enum

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from contract.audio import SAMPLE_RATE_HZ
from firmware.audio.echo import webrtc_audio


class NoiseSuppression(enum.StrEnum):
    """WebRTC's suppression levels."""

    OFF = "off"
    LOW = "low"
    MODERATE = "moderate"
    HIGH = "high"
    VERY_HIGH = "very_high"


_LEVELS = {
    NoiseSuppression.LOW: 0,
    NoiseSuppression.MODERATE: 1,
    NoiseSuppression.HIGH: 2,
    NoiseSuppression.VERY_HIGH: 3,
}


class MicrophoneSettings(BaseModel):
    """What is done to the microphone before anything listens (besides echo cancellation)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    noise_suppression: NoiseSuppression = Field(
        NoiseSuppression.OFF, description="off (measured best for the wake word), low, moderate, high, very_high"
    )
    auto_gain: bool = Field(False, description="raise a quiet talker's level (measured: loses wake words in noise)")


class NoiseCleaner:
    """Frames through WebRTC's noise suppressor and gain controller, state kept across frames."""

    def __init__(self, settings: MicrophoneSettings) -> None:
        suppress = settings.noise_suppression is not NoiseSuppression.OFF
        self._processor = webrtc_audio().AudioProcessor(
            sample_rate=SAMPLE_RATE_HZ,
            num_channels=1,
            noise_suppression=suppress,
            ns_level=_LEVELS.get(settings.noise_suppression, 1),
            auto_gain_control=settings.auto_gain,
        )

    def clean(self, frame: bytes) -> bytes:
        """One frame of wire-format PCM (a whole number of 10 ms), cleaned."""
        out = self._processor.process(np.frombuffer(frame, dtype="<i2"))
        cleaned: bytes = out.astype("<i2", copy=False).tobytes()
        return cleaned

    def gap(self) -> None:
        """No audio came for a while: nothing to do (the noise estimate stays useful)."""


def noise_cleaner(settings: MicrophoneSettings) -> NoiseCleaner | None:
    """The cleaner these settings ask for, or None when they ask for nothing."""
    if settings.noise_suppression is NoiseSuppression.OFF and not settings.auto_gain:
        return None
    return NoiseCleaner(settings)
