"""What an intent handler is given, and what it may answer.

A handler decides; the assistant acts. A handler reads the moment and the device's own
state (timers, volume) and returns an outcome: words to say, silence, or a command for the
consent service. Speaking, cutting playback and waiting for the cloud stay in the
assistant, so no handler can forget the answer timeout or talk over a barge-in, and a
handler is tested by calling it, with no thread, audio or clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from contract.messages import PrivacyAction
from firmware.assistant.intents import Intent
from firmware.assistant.settings import Language
from firmware.assistant.timers import TimerBook


@dataclass(frozen=True)
class Say:
    """Answer aloud with `text`."""

    text: str


@dataclass(frozen=True)
class Hush:
    """Stop whatever is playing (a reply, a ringing timer) and say nothing."""


@dataclass(frozen=True)
class AskConsent:
    """Send `action` to the consent service; the answer is said when its reply comes."""

    action: PrivacyAction


Outcome = Say | Hush | AskConsent


class VolumeKnob(Protocol):
    """The output's loudness, 0-1 (the Player is one)."""

    volume: float


@dataclass(frozen=True)
class Context:
    """What a handler may read or change: the moment it runs and the device's own state."""

    language: Language
    now_seconds: float  # monotonic, the clock timers are due on
    local_now: datetime  # the household's wall clock, for what is said aloud
    timers: TimerBook
    ringing: bool  # a finished timer rings now: "stop the timer" means that one
    volume: VolumeKnob | None  # None: no output to turn
    configured_volume: float  # the settings' level, what a device with no output reports


class IntentHandler(Protocol):
    """One intent's behaviour, registered under the intent names it answers.

    Handlers keep no state of their own (the device's state comes in the `Context`), so
    one instance serves every assistant and registry.
    """

    @property
    def intent_names(self) -> frozenset[str]:
        """The intents (hassil names, as in `sentences/*.yaml`) this handler answers."""
        ...

    def handle(self, intent: Intent, context: Context) -> Outcome:
        """What to do about `intent` (on the assistant's worker thread: never block)."""
        ...
