"""Timers that run on the speaker itself: they ring even when the network is gone.

Pure: fed the monotonic time, never reading a clock, so tests step through minutes at once.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass


@dataclass(frozen=True)
class Timer:
    """One running timer."""

    timer_id: int
    seconds: float
    due_at: float


class TimerBook:
    """The running timers, soonest first."""

    def __init__(self, max_timers: int) -> None:
        self._max_timers = max_timers
        self._timers: list[Timer] = []
        self._ids = itertools.count(1)

    def start(self, seconds: float, now: float) -> Timer | None:
        """A new timer, or None when `max_timers` are running."""
        if len(self._timers) >= self._max_timers:
            return None
        timer = Timer(next(self._ids), seconds, now + seconds)
        self._timers.append(timer)
        self._timers.sort(key=lambda t: t.due_at)
        return timer

    def soonest(self) -> Timer | None:
        """The timer that finishes first."""
        return self._timers[0] if self._timers else None

    def cancel_soonest(self) -> Timer | None:
        """Cancel the timer that finishes first ("cancel the timer" means the one about to ring)."""
        return self._timers.pop(0) if self._timers else None

    def due(self, now: float) -> list[Timer]:
        """Remove and return the timers finished by `now`."""
        finished = [t for t in self._timers if t.due_at <= now]
        self._timers = self._timers[len(finished) :]
        return finished

    def __len__(self) -> int:
        return len(self._timers)
