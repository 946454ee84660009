"""'Never mind' / 'stop': silence, whatever is playing."""

from __future__ import annotations

from firmware.assistant.handlers.base import Context, Hush, IntentHandler, Outcome
from firmware.assistant.intents import Intent


class Nevermind:
    """ "Stop." / "Never mind." """

    intent_names = frozenset({"HassNevermind"})

    def handle(self, intent: Intent, context: Context) -> Outcome:
        """Stop a reply or a ringing timer; nothing is said, and no timer is cancelled."""
        return Hush()


HANDLERS: tuple[IntentHandler, ...] = (Nevermind(),)
