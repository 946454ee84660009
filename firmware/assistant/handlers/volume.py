"""Loudness by voice: set a level, or step it up or down."""

from __future__ import annotations

from firmware.assistant.handlers.base import Context, IntentHandler, Outcome, Say
from firmware.assistant.intents import Intent
from firmware.assistant.replies import say
from firmware.assistant.settings import Language

_STEP = 0.1


def _set(context: Context, wanted: float) -> Outcome:
    level = min(max(wanted, 0.0), 1.0)
    if context.volume is not None:
        context.volume.volume = level
    return Say(say("volume", context.language, percent=round(level * 100)))


def _current(context: Context) -> float:
    # No output: every change starts again from the settings, since nothing kept the last one.
    return context.volume.volume if context.volume is not None else context.configured_volume


class SetVolume:
    """ "Set the volume to 30 percent." """

    intent_names = frozenset({"HassSetVolume"})

    def handle(self, intent: Intent, context: Context) -> Outcome:
        """Set the spoken level (bounded to 0-100 %)."""
        scale = 10 if context.language is Language.KOREAN else 100  # "볼륨 오" is 5 of 10
        return _set(context, int(intent.slots.get("volume", 0)) / scale)


class StepVolume:
    """ "Louder." / "Quieter." — one step of `step` (0-1) per request."""

    def __init__(self, intent_name: str, step: float) -> None:
        self.intent_names = frozenset({intent_name})
        self._step = step

    def handle(self, intent: Intent, context: Context) -> Outcome:
        """Move the level one step (bounded to 0-100 %)."""
        return _set(context, _current(context) + self._step)


HANDLERS: tuple[IntentHandler, ...] = (
    SetVolume(),
    StepVolume("EarmarkVolumeUp", _STEP),
    StepVolume("EarmarkVolumeDown", -_STEP),
)
