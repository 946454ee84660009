"""Timers by voice: start, ask what is left, cancel (or silence one that rings).

The timers themselves live in the device's `TimerBook`, so they ring even when the
network is gone; these handlers only start, read and cancel them.
"""

from __future__ import annotations

from firmware.assistant import replies
from firmware.assistant.handlers.base import Context, Hush, IntentHandler, Outcome, Say
from firmware.assistant.intents import Intent
from firmware.assistant.replies import say

_UNIT_SECONDS = (("hours", 3600), ("minutes", 60), ("seconds", 1))  # the sentences' slot names


class StartTimer:
    """ "Set a timer for five minutes." """

    intent_names = frozenset({"HassStartTimer"})

    def handle(self, intent: Intent, context: Context) -> Outcome:
        """Start a timer for the spoken duration, unless `max_timers` already run."""
        lang = context.language
        seconds = sum(int(intent.slots.get(unit, 0)) * size for unit, size in _UNIT_SECONDS)
        # The sentences' ranges start at 1, so no duration is a template's fault: refused like a full book.
        timer = context.timers.start(seconds, context.now_seconds) if seconds > 0 else None
        if timer is None:
            return Say(say("timers_full", lang))
        return Say(say("timer_set", lang, duration=replies.duration(seconds, lang)))


class TimerStatus:
    """ "How much time is left?" """

    intent_names = frozenset({"HassTimerStatus"})

    def handle(self, intent: Intent, context: Context) -> Outcome:
        """The time left on the timer that rings first."""
        lang = context.language
        soonest = context.timers.soonest()
        if soonest is None:
            return Say(say("no_timer", lang))
        return Say(say("timer_left", lang, duration=replies.duration(soonest.due_at - context.now_seconds, lang)))


class CancelTimer:
    """ "Cancel the timer." """

    intent_names = frozenset({"HassCancelTimer"})

    def handle(self, intent: Intent, context: Context) -> Outcome:
        """Silence a ringing timer, else cancel the one that would ring first."""
        if context.ringing:
            return Hush()  # "stop the timer" while it rings: that one, not the next
        cancelled = context.timers.cancel_soonest()
        return Say(say("timer_cancelled" if cancelled else "no_timer", context.language))


HANDLERS: tuple[IntentHandler, ...] = (StartTimer(), TimerStatus(), CancelTimer())
