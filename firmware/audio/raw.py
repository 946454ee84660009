"""Raw 16 kHz mono S16_LE PCM from a byte stream, e.g. `arecord ... -t raw | earmark device listen --input -`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from contract.audio import FRAME_BYTES
from firmware.audio.framer import frames_of


class RawStreamSource:
    """Frames from a binary stream of wire-format PCM (stdin by default)."""

    def __init__(self, stream: BinaryIO, name: str = "stdin") -> None:
        self.name = name
        self._stream = stream

    def _chunks(self) -> Iterator[bytes]:
        while True:
            # read1 returns what a pipe has now instead of waiting for a full buffer,
            # so live audio from arecord is not held back.
            read1 = getattr(self._stream, "read1", None)
            chunk = read1(FRAME_BYTES) if read1 is not None else self._stream.read(FRAME_BYTES)
            if not chunk:
                return
            yield chunk

    def frames(self) -> Iterator[bytes]:
        """Yield 80 ms frames until end of stream."""
        return frames_of(self._chunks())

    def close(self) -> None:
        """Leave the stream open: stdin belongs to the caller."""
