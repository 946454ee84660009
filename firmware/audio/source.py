"""Choosing an audio input by what the user typed."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

SAMPLE_WAV = Path(__file__).resolve().parent.parent / "samples" / "alexa_kitchen_lights.wav"


class AudioSource(Protocol):
    """Anything that yields 80 ms frames of 16 kHz mono S16_LE PCM."""

    name: str

    def frames(self) -> Iterator[bytes]:
        """Yield frames of exactly FRAME_BYTES."""
        ...

    def close(self) -> None:
        """Release what the source holds."""
        ...


def open_source(spec: str, device: str | None = None) -> AudioSource:
    """`mic`, `sample` (the bundled WAV), `-` (raw PCM on stdin), or a WAV path."""
    if spec == "mic":
        from firmware.audio.mic import MicrophoneSource

        return MicrophoneSource(device)
    if spec == "-":
        from firmware.audio.raw import RawStreamSource

        return RawStreamSource(sys.stdin.buffer)
    from firmware.audio.wav import WavFileSource

    return WavFileSource(SAMPLE_WAV if spec == "sample" else Path(spec))
