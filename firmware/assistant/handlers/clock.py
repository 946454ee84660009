"""The time and the date, from the device's own clock (no network needed).

Named `clock`, not `time`, so it is never mistaken for the standard library's module.
"""

from __future__ import annotations

from firmware.assistant import replies
from firmware.assistant.handlers.base import Context, IntentHandler, Outcome, Say
from firmware.assistant.intents import Intent


class CurrentTime:
    """ "What time is it?" """

    intent_names = frozenset({"HassGetCurrentTime"})

    def handle(self, intent: Intent, context: Context) -> Outcome:
        """The time on the household's wall clock."""
        return Say(replies.clock_time(context.local_now, context.language))


class CurrentDate:
    """ "What's the date today?" """

    intent_names = frozenset({"HassGetCurrentDate"})

    def handle(self, intent: Intent, context: Context) -> Outcome:
        """Today's weekday and date."""
        return Say(replies.date(context.local_now, context.language))


HANDLERS: tuple[IntentHandler, ...] = (CurrentTime(), CurrentDate())
