"""Cut a byte stream of PCM into fixed-size frames."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from contract.audio import FRAME_BYTES


def frames_of(chunks: Iterable[bytes], frame_bytes: int = FRAME_BYTES) -> Iterator[bytes]:
    """Yield frames of exactly frame_bytes; the last partial frame is zero-padded, never dropped."""
    pending = bytearray()
    for chunk in chunks:
        pending += chunk
        while len(pending) >= frame_bytes:
            yield bytes(pending[:frame_bytes])
            del pending[:frame_bytes]
    if pending:
        # Padding with silence keeps the user's last syllable; dropping it would lose speech.
        yield bytes(pending) + bytes(frame_bytes - len(pending))
