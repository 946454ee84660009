"""Put an utterance's audio chunks back in order: duplicates, reordering and gaps.

Pure: fed chunks, it returns the PCM that is now contiguous; it never waits or reads a
clock (the stream decides how long to wait for a missing chunk). Everything it holds or
does is bounded by its window, never by a number a device sent: a chunk numbered past
the window is refused, and giving up on gaps counts them instead of walking them.
"""

from __future__ import annotations

from contract.errors import ContractError
from contract.messages import AudioChunk


class Reassembler:
    """Releases chunk audio in sequence order as soon as it is contiguous."""

    def __init__(self, window_chunks: int = 64) -> None:
        self._next = 0
        self._pending: dict[int, bytes] = {}
        self._window = window_chunks  # 64 x 160 ms = 10 s held out of order at most
        self.duplicates = 0
        self.missing = 0

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
        if chunk.sequence >= self._next + self._window:
            raise ContractError("sequence_out_of_window", f"chunk {self._window}+ ahead of the next missing one")
        self._pending[chunk.sequence] = chunk.pcm
        ready = []
        while self._next in self._pending:
            ready.append(self._pending.pop(self._next))
            self._next += 1
        return ready

    def skip_gaps(self, expected_chunks: int | None = None) -> list[bytes]:
        """Give up on missing chunks: return everything held, in order, counting the holes.

        With `expected_chunks` (from the end message, already bounded by the cloud),
        chunks missing at the tail count too. O(chunks held), never O(gap).
        """
        ready: list[bytes] = []
        for sequence in sorted(self._pending):
            self.missing += sequence - self._next
            ready.append(self._pending.pop(sequence))
            self._next = sequence + 1
        if expected_chunks is not None and expected_chunks > self._next:
            self.missing += expected_chunks - self._next
            self._next = expected_chunks
        return ready
