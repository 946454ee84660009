"""The intent handler registry: every built-in intent answered by exactly one handler, an
intent with none gets "can't do that", and a new intent needs no edit to the assistant."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from uuid import uuid4

import pytest
import yaml

from contract.messages import PrivacyAction, PrivacyReply, RecognitionResult
from firmware.assistant.assistant import Assistant, Record
from firmware.assistant.handlers import (
    AskConsent,
    Context,
    Hush,
    IntentRegistry,
    Outcome,
    Say,
    consent_reply,
    default_registry,
)
from firmware.assistant.intents import Intent, IntentMatcher
from firmware.assistant.settings import AssistantSettings, Language
from firmware.assistant.timers import TimerBook
from firmware.audio.output_settings import OutputSettings
from firmware.errors import AssistantError
from tests.conftest import REPO

SENTENCES = REPO / "firmware" / "assistant" / "sentences"


@dataclass
class Knob:
    """A volume control with nothing behind it."""

    volume: float


def sentence_intents(language: Language) -> set[str]:
    loaded = yaml.safe_load((SENTENCES / f"{language.value}.yaml").read_text(encoding="utf-8"))
    return set(loaded["intents"])


def context(
    language: Language = Language.ENGLISH,
    *,
    timers: TimerBook | None = None,
    ringing: bool = False,
    volume: Knob | None = None,
) -> Context:
    return Context(
        language=language,
        now_seconds=100.0,
        local_now=datetime(2026, 11, 28, 15, 5).astimezone(),
        timers=timers if timers is not None else TimerBook(max_timers=3),
        ringing=ringing,
        volume=volume,
        configured_volume=0.8,
    )


def handle(name: str, ctx: Context, **slots: int | str) -> Outcome:
    handler = default_registry().get(name)
    assert handler is not None
    return handler.handle(Intent(name, dict(slots)), ctx)


@pytest.mark.parametrize("language", list(Language))
def test_every_intent_in_the_sentences_has_exactly_one_handler(language: Language) -> None:
    registry = default_registry()  # building it refuses a second handler for any intent
    said = sentence_intents(language)
    assert {name for name in said if registry.get(name) is None} == set()
    assert registry.names() == said  # and no handler waits for an intent no sentence reaches


def test_a_second_handler_for_an_intent_is_refused() -> None:
    registry = default_registry()
    clash = default_registry().get("HassNevermind")
    assert clash is not None
    with pytest.raises(AssistantError, match="HassNevermind"):
        registry.register(clash)


def test_handlers_decide_without_threads_or_audio() -> None:
    timers = TimerBook(max_timers=3)
    assert handle("HassStartTimer", context(timers=timers), minutes=1, seconds=30) == Say(
        "Timer set for 1 minute and 30 seconds."
    )
    assert handle("HassTimerStatus", context(timers=timers)) == Say("1 minute and 30 seconds left.")
    # "stop the timer" while one rings silences that one: the running timer stays.
    assert handle("HassCancelTimer", context(timers=timers, ringing=True)) == Hush() and len(timers) == 1
    assert handle("HassCancelTimer", context(timers=timers)) == Say("Timer cancelled.") and len(timers) == 0
    assert handle("HassNevermind", context()) == Hush()
    assert handle("EarmarkDeleteToday", context()) == AskConsent(PrivacyAction.DELETE_TODAY)
    assert handle("HassGetCurrentDate", context()) == Say("Today is Saturday, November 28.")


def test_volume_turns_the_knob_within_bounds() -> None:
    knob = Knob(0.95)
    assert handle("EarmarkVolumeUp", context(volume=knob)) == Say("Volume 100 percent.") and knob.volume == 1.0
    assert handle("HassSetVolume", context(Language.KOREAN, volume=knob), volume=5) == Say("볼륨 50 퍼센트.")
    assert knob.volume == 0.5
    assert handle("EarmarkVolumeDown", context()) == Say("Volume 70 percent.")  # no output: from the settings


def test_a_failed_privacy_command_says_nothing_changed() -> None:
    failed = PrivacyReply(request_id=uuid4(), action=PrivacyAction.DELETE_LAST, ok=False)
    assert consent_reply(failed, Language.ENGLISH) == "Sorry, that didn't work. Nothing was changed."


class OrderPizza:
    """A handler written outside the built-in families, as a new intent would be."""

    intent_names = frozenset({"EarmarkOrderPizza"})

    def handle(self, intent: Intent, context: Context) -> Outcome:
        return Say(f"{intent.slots['count']} pizzas, coming up.")


def answer_to(tmp_path: Path, text: str, registry: IntentRegistry | None = None) -> Record:
    """What a silent assistant (no voice, no output) answers to `text`, with a custom intent's sentences."""
    (tmp_path / "pizza.yaml").write_text(
        "language: en\nintents:\n  EarmarkOrderPizza:\n    data:\n"
        '      - sentences: ["order {count} pizzas"]\nlists:\n  count:\n    range: {from: 1, to: 9}\n'
    )
    records: list[Record] = []
    lock = threading.Lock()

    def on_record(record: Record) -> None:
        with lock:
            records.append(record)

    matcher = IntentMatcher(Language.ENGLISH, tmp_path)
    assistant = Assistant(
        AssistantSettings(),
        matcher,
        None,
        None,
        output=OutputSettings(sounds=False),
        on_record=on_record,
        handlers=registry,
    )
    assistant.start()
    try:
        utterance_id = uuid4()
        assistant.on_result(RecognitionResult(utterance_id=utterance_id, final=True, text=text))
        assert assistant.wait_idle(30)
        with lock:
            return next(r for r in records if r["type"] == "answer" and r["utterance_id"] == str(utterance_id))
    finally:
        assistant.stop()


def test_an_intent_with_no_handler_gets_the_cant_do_reply(tmp_path: Path) -> None:
    answer = answer_to(tmp_path, "order 3 pizzas")
    assert answer["intent"] == "EarmarkOrderPizza" and answer["reply"] == "Sorry, I can't do that yet."


def test_a_new_intent_is_a_registered_handler_and_its_sentences(tmp_path: Path) -> None:
    registry = default_registry()
    registry.register(OrderPizza())
    answer = answer_to(tmp_path, "order 3 pizzas", registry)
    assert answer["intent"] == "EarmarkOrderPizza" and answer["reply"] == "3 pizzas, coming up."
    assert answer_to(tmp_path, "never mind", registry)["reply"] == ""  # the built-ins still answer
