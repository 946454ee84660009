"""Put an utterance's audio chunks back in order: duplicates, reordering and gaps.

Pure: fed chunks, it returns the PCM that is now contiguous; it never waits or reads a
clock (the session decides how long to wait for a missing chunk).
"""

from __future__ import annotations

from contract.errors import ContractError
from contract.messages import AudioChunk


class Reassembler:
    """Releases chunk audio in sequence order as soon as it is contiguous."""

    def __init__(self, max_pending_chunks: int = 400) -> None:
        self._next = 0
        self._pending: dict[int, bytes] = {}
        self._max_pending = max_pending_chunks  # 400 x 160 ms = 64 s held out of order
        self.duplicates = 0
        self.skipped: list[int] = []

    @property
    def next_sequence(self) -> int:
        """The sequence number that would extend the contiguous audio."""
        return self._next

    @property
    def waiting(self) -> bool:
        """Whether chunks are held behind a gap."""
        return bool(self._pending)

    def add(self, chunk: AudioChunk) -> list[bytes]:
        """Accept one chunk; return the audio that became contiguous, in order."""
        if chunk.sequence < self._next or chunk.sequence in self._pending:
            self.duplicates += 1  # QoS 1 redelivery
            return []
        if len(self._pending) >= self._max_pending:
            raise ContractError("too_many_pending", "too many chunks held behind a gap")
        self._pending[chunk.sequence] = chunk.pcm
        return self._release()

    def _release(self) -> list[bytes]:
        ready = []
        while self._next in self._pending:
            ready.append(self._pending.pop(self._next))
            self._next += 1
        return ready

    def skip_gaps(self, expected_chunks: int | None = None) -> list[bytes]:
        """Give up on missing chunks: return everything held, in order, recording the holes.

        With `expected_chunks` (from the end message), chunks missing at the tail count too.
        """
        ready: list[bytes] = []
        last = max(self._pending, default=self._next - 1)
        if expected_chunks is not None:
            last = max(last, expected_chunks - 1)
        while self._next <= last:
            if self._next in self._pending:
                ready.append(self._pending.pop(self._next))
            else:
                self.skipped.append(self._next)
            self._next += 1
        return ready
