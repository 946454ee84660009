"""Intent handlers, registered by intent name (Home Assistant's `intent.async_register`).

The assistant looks a handler up by the matched intent's name and never names an intent
itself. A new intent is a handler (a module per family here), one line in
`default_registry`, and its sentences in `sentences/<language>.yaml`.
"""

from __future__ import annotations

from firmware.assistant.handlers import clock, nevermind, privacy, timers, volume
from firmware.assistant.handlers.base import AskConsent, Context, Hush, IntentHandler, Outcome, Say, VolumeKnob
from firmware.assistant.handlers.privacy import consent_reply
from firmware.errors import AssistantError

__all__ = [
    "AskConsent",
    "Context",
    "Hush",
    "IntentHandler",
    "IntentRegistry",
    "Outcome",
    "Say",
    "VolumeKnob",
    "consent_reply",
    "default_registry",
]


class IntentRegistry:
    """Intent name -> the one handler that answers it."""

    def __init__(self) -> None:
        self._handlers: dict[str, IntentHandler] = {}

    def register(self, handler: IntentHandler) -> None:
        """Answer the handler's intents with it; AssistantError if one of them has a handler already."""
        # Refused rather than replaced (Home Assistant overwrites with a warning): which of
        # two handlers answers must never depend on the order they were registered in.
        taken = handler.intent_names & self._handlers.keys()
        if taken:
            raise AssistantError(f"intents {sorted(taken)} already have a handler")
        for name in handler.intent_names:
            self._handlers[name] = handler

    def get(self, intent_name: str) -> IntentHandler | None:
        """The handler of `intent_name`, or None (the assistant says it can't do that yet)."""
        return self._handlers.get(intent_name)

    def names(self) -> frozenset[str]:
        """Every intent that has a handler."""
        return frozenset(self._handlers)


def default_registry() -> IntentRegistry:
    """The built-in intents' handlers; the one list a new handler family joins."""
    registry = IntentRegistry()
    for handler in (*clock.HANDLERS, *timers.HANDLERS, *volume.HANDLERS, *privacy.HANDLERS, *nevermind.HANDLERS):
        registry.register(handler)
    return registry
