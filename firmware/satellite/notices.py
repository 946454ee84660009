"""What Home Assistant only tells the speaker: errors, transcripts, replies and timers.

Transcripts and reply texts are what a household said and hears: their content is never
logged. Timers are Home Assistant's; the speaker only tracks them (bounded, validated:
a peer's ids and numbers are claims) and rings when one finishes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from wyoming.asr import Transcript
from wyoming.error import Error
from wyoming.event import Event
from wyoming.timer import TimerCancelled, TimerFinished, TimerStarted, TimerUpdated
from wyoming.tts import Synthesize

from firmware.sounds import Sound

_LOGGER = logging.getLogger("firmware.satellite.link")

MAX_TIMERS = 32
_MAX_ID_CHARS = 128


class Notices:
    """Acts on the events that only inform; `play(sound, times)` sounds them."""

    def __init__(self, play: Callable[[Sound, int], None], timer_rings: int) -> None:
        self._play = play
        self._timer_rings = timer_rings
        self.timers: dict[str, int] = {}

    def handle(self, event: Event) -> None:
        """Events that only inform the speaker. Transcripts and reply texts are what a
        household said and hears: their content is never logged."""
        if Transcript.is_type(event.type) or Synthesize.is_type(event.type):
            _LOGGER.debug("%s (%d characters)", event.type, len(str(event.data.get("text", ""))))
        elif Error.is_type(event.type):
            error = Error.from_event(event)
            _LOGGER.warning("Home Assistant could not serve the request (%s)", error.code or "no code")
            self._play(Sound.ERROR, 1)
        elif TimerStarted.is_type(event.type):
            timer = TimerStarted.from_event(event)
            self._track(timer.id, timer.total_seconds)
            _LOGGER.info("timer started: %s s (%d running)", timer.total_seconds, len(self.timers))
        elif TimerUpdated.is_type(event.type):
            updated = TimerUpdated.from_event(event)
            self._track(updated.id, updated.total_seconds)
            _LOGGER.info("timer %s: %s s", "running" if updated.is_active else "paused", updated.total_seconds)
        elif TimerCancelled.is_type(event.type):
            self.timers.pop(TimerCancelled.from_event(event).id, None)
            _LOGGER.info("timer cancelled (%d running)", len(self.timers))
        elif TimerFinished.is_type(event.type):
            self.timers.pop(TimerFinished.from_event(event).id, None)
            _LOGGER.info("timer finished (%d running)", len(self.timers))
            self._play(Sound.TIMER, self._timer_rings)
        else:
            _LOGGER.debug("event %s from Home Assistant", event.type)

    def _track(self, timer_id: object, total_seconds: object) -> None:
        if not isinstance(timer_id, str) or len(timer_id) > _MAX_ID_CHARS:
            raise ValueError("timer id is not a short string")
        if type(total_seconds) is not int or total_seconds < 0:
            raise ValueError("timer seconds is not a non-negative integer")
        if timer_id not in self.timers and len(self.timers) >= MAX_TIMERS:
            raise ValueError(f"more than {MAX_TIMERS} timers")
        self.timers[timer_id] = total_seconds
