"""The one audio format Earmark speaks on the wire and inside the device."""

from __future__ import annotations

from typing import Final

SAMPLE_RATE_HZ: Final = 16_000
SAMPLE_WIDTH_BYTES: Final = 2  # signed 16-bit little-endian
CHANNELS: Final = 1
BYTES_PER_SECOND: Final = SAMPLE_RATE_HZ * SAMPLE_WIDTH_BYTES * CHANNELS

# openWakeWord is built around 80 ms frames; every audio source yields exactly these.
FRAME_SAMPLES: Final = 1280
FRAME_BYTES: Final = FRAME_SAMPLES * SAMPLE_WIDTH_BYTES
FRAME_SECONDS: Final = FRAME_SAMPLES / SAMPLE_RATE_HZ


def seconds_to_bytes(seconds: float) -> int:
    """Whole-sample byte count for a duration at the wire format."""
    return round(seconds * SAMPLE_RATE_HZ) * SAMPLE_WIDTH_BYTES


def bytes_to_seconds(n_bytes: int) -> float:
    """Duration of n_bytes of wire-format PCM."""
    return n_bytes / BYTES_PER_SECOND
