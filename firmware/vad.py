"""Speech/non-speech per 10 or 20 ms with webrtcvad, over the device's 80 ms frames."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contract.audio import FRAME_BYTES, SAMPLE_RATE_HZ, seconds_to_bytes
from firmware.errors import ModelLoadError


class VadSettings(BaseModel):
    """webrtcvad mode and frame length."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    aggressiveness: int = Field(3, ge=0, le=3, description="0 keeps most audio as speech, 3 filters most")
    # 30 ms does not divide the 80 ms wake-word frame; 10 and 20 do.
    frame_ms: Literal[10, 20] = 20


class SpeechClassifier:
    """One utterance's VAD. Make a new one per utterance: a reused webrtcvad instance
    carries state from noise into silence and calls 8-11 % of the silence speech."""

    def __init__(self, settings: VadSettings) -> None:
        try:
            import webrtcvad
        except ImportError as err:
            raise ModelLoadError("webrtcvad is not installed (pip install webrtcvad-wheels)") from err
        self._vad = webrtcvad.Vad(settings.aggressiveness)
        self._step_bytes = seconds_to_bytes(settings.frame_ms / 1000)
        self._step_seconds = settings.frame_ms / 1000
        if FRAME_BYTES % self._step_bytes:
            raise ValueError("VAD frame must divide the 80 ms device frame")

    def classify(self, frame: bytes) -> list[tuple[float, bool]]:
        """Split an 80 ms frame into VAD frames; return (seconds, is_speech) for each."""
        return [
            (self._step_seconds, self._vad.is_speech(frame[i : i + self._step_bytes], SAMPLE_RATE_HZ))
            for i in range(0, len(frame), self._step_bytes)
        ]
