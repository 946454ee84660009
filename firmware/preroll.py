"""A fixed-size ring of the most recent audio, so the first syllable is never lost."""

from __future__ import annotations

from collections import deque

from contract.audio import FRAME_BYTES, seconds_to_bytes


class PreRoll:
    """Holds the last `seconds` of frames; `take()` hands them over and empties the ring."""

    def __init__(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("pre-roll seconds must be >= 0")
        # Whole frames only, rounded up, so at least `seconds` is kept.
        self._frames: deque[bytes] = deque(maxlen=-(-seconds_to_bytes(seconds) // FRAME_BYTES))

    def push(self, frame: bytes) -> None:
        """Add the newest frame, dropping the oldest when full."""
        if self._frames.maxlen:
            self._frames.append(frame)

    def take(self) -> bytes:
        """Return everything held, oldest first, and clear the ring."""
        audio = b"".join(self._frames)
        self._frames.clear()
        return audio

    def clear(self) -> None:
        """Forget everything held (e.g. on mute)."""
        self._frames.clear()
