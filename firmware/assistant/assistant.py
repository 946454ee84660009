"""The speaker answers: sounds, intents, timers, spoken replies, privacy by voice.

Runs on the device in cloud mode. The cloud only turns speech into text; what the text
means is decided here, with hassil, so timers and volume work on the device and keep
working when the network is gone. What each intent does is its handler's business
(`handlers/`, looked up by name): this module never names an intent. Handlers only decide;
the answering happens here, so privacy commands all wait for the consent service the same
way (it can only narrow what is kept or reviewed), and every request gets an answer.

One worker thread owns the state (timers, pending answers); the audio thread, the
uplink's inbox thread and the timers only queue jobs for it, so nothing here blocks the
microphone. Barge-in: a wake word cuts whatever is playing (a reply, a ringing timer).
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, assert_never
from uuid import UUID

from contract.audio import bytes_to_seconds
from contract.messages import (
    PrivacyAction,
    PrivacyReply,
    PrivacyRequest,
    RecognitionResult,
    UtteranceCancelled,
)
from firmware.assistant.handlers import AskConsent, Context, Hush, IntentRegistry, Say, consent_reply, default_registry
from firmware.assistant.intents import Intent, IntentMatcher
from firmware.assistant.replies import say
from firmware.assistant.settings import AssistantSettings
from firmware.assistant.speaking import ReplySpeaker
from firmware.assistant.timers import TimerBook
from firmware.assistant.voice import Voice
from firmware.audio.output import Player
from firmware.audio.output_settings import OutputSettings
from firmware.events import FrontEndEvent, SpeechEnded, WakeDetected
from firmware.segmenter import EndReason
from firmware.sounds import Sound, render

_LOGGER = logging.getLogger(__name__)

_QUEUE_JOBS = 256
_ECHO_MARGIN_SECONDS = 0.15  # output latency: the cue is still audible this long after its last write
_ANSWERED_REQUESTS = {EndReason.SILENCE, EndReason.MAX_LENGTH}
_DEFAULT_OUTPUT = OutputSettings()

Record = dict[str, Any]  # one JSON-safe line for whoever prints what the speaker does


@dataclass
class _Pending:
    deadline: float
    utterance_id: UUID
    intent: Intent | None = None


class Assistant:
    """Subscribe `handle` to the front end, `on_result`/`on_cloud` to the uplink; `start()`."""

    def __init__(
        self,
        settings: AssistantSettings,
        matcher: IntentMatcher,
        voice: Voice | None,
        player: Player | None,
        *,
        output: OutputSettings = _DEFAULT_OUTPUT,
        send_privacy: Callable[[PrivacyRequest], None] | None = None,
        on_record: Callable[[Record], None] = lambda _record: None,
        reply_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        local_now: Callable[[], datetime] = lambda: datetime.now().astimezone(),
        handlers: IntentRegistry | None = None,
    ) -> None:
        self._settings = settings
        self._output = output
        self._language = settings.language
        self._matcher = matcher
        self._handlers = handlers if handlers is not None else default_registry()
        self._player = player if player is not None and player.available else None
        self._speaker = ReplySpeaker(voice, self._player, reply_dir, clock)
        self._send_privacy = send_privacy
        self._on_record = on_record
        self._clock = clock
        self._local_now = local_now
        self._jobs: queue.Queue[tuple[str, Any] | None] = queue.Queue(maxsize=_QUEUE_JOBS)
        self._timers = TimerBook(settings.max_timers)
        self._waiting: dict[UUID, _Pending] = {}  # requests over, answer not yet in
        self._privacy: dict[UUID, _Pending] = {}  # privacy commands sent, reply not yet in
        self._given_up: set[UUID] = set()
        self._answered: collections.OrderedDict[UUID, None] = collections.OrderedDict()  # bounded, see _answer
        self._ringing = False  # a finished timer is ringing: "stop" silences it, cancels no other
        self._idle = threading.Condition()
        self._busy_jobs = 0
        self._sounds = {sound: render(sound) for sound in Sound} if output.sounds else {}
        self._thread = threading.Thread(target=self._run, name="assistant", daemon=True)

    # -- other threads: queue only ------------------------------------------------------

    def start(self) -> None:
        """Start answering."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the worker (what is playing is cut by closing the player)."""
        self._jobs.put(None)
        self._thread.join(timeout=5)

    def echo_seconds(self) -> float:
        """How long after the wake word the speaker's own wake sound is audible: the
        front end keeps that much of the request silent (it never enters a request)."""
        if self._player is None or Sound.WAKE not in self._sounds:
            return 0.0
        return bytes_to_seconds(len(self._sounds[Sound.WAKE])) + _ECHO_MARGIN_SECONDS

    def handle(self, event: FrontEndEvent) -> None:
        """Front-end subscriber (audio thread)."""
        if isinstance(event, WakeDetected):
            # Barge-in now, from here: the worker may be busy synthesizing a reply.
            self._speaker.barge_in()
            self._cut()
            self._put("wake", event.utterance_id)
        elif isinstance(event, SpeechEnded):
            self._put("ended", event)

    def on_result(self, result: RecognitionResult) -> None:
        """Uplink subscriber: final transcripts are answered."""
        if result.final:
            self._put("final", result)

    def on_cloud(self, message: UtteranceCancelled | PrivacyReply) -> None:
        """Uplink subscriber: cancellations and privacy replies."""
        self._put("cloud", message)

    @property
    def speaking(self) -> bool:
        """A spoken reply is playing now (for the lights)."""
        return self._speaker.speaking

    @property
    def first_audio_at(self) -> dict[UUID, float]:
        """For the benchmark: when each reply's first sample was played (on `clock`)."""
        return self._speaker.first_audio_at

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every request and command has its answer (or gave up): real seconds,
        whatever clock the assistant runs on."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy_jobs or self._waiting or self._privacy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.1))
        if self._player is not None:
            done = threading.Event()
            self._player.end(done.set)  # after whatever is queued ahead of it
            return done.wait(max(deadline - time.monotonic(), 0.0))
        return True

    def _put(self, kind: str, payload: Any) -> None:
        with self._idle:
            self._busy_jobs += 1
        try:
            self._jobs.put_nowait((kind, payload))
        except queue.Full:
            with self._idle:
                self._busy_jobs -= 1
            _LOGGER.warning("assistant is behind: dropped a %s", kind)

    # -- the worker ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self._next_wait())
            except queue.Empty:
                job = ("tick", None)
            if job is None:
                return
            try:
                self._do(*job)
            except Exception:
                _LOGGER.exception("assistant failed on a %s", job[0])
            finally:
                self._expire()
                if job[0] != "tick":
                    with self._idle:
                        self._busy_jobs -= 1
                        self._idle.notify_all()

    def _next_wait(self) -> float:
        moments = [p.deadline for p in (*self._waiting.values(), *self._privacy.values())]
        soonest = self._timers.soonest()
        if soonest is not None:
            moments.append(soonest.due_at)
        if not moments:
            return 1.0
        return min(max(min(moments) - self._clock(), 0.0), 1.0)

    def _do(self, kind: str, payload: Any) -> None:
        if kind == "wake":
            self._cut()  # whatever the worker queued since the wake word: the user talks now
            self._sound(Sound.WAKE)
        elif kind == "ended":
            event: SpeechEnded = payload
            done = event.utterance_id in self._given_up or event.utterance_id in self._answered
            if event.reason in _ANSWERED_REQUESTS and not done:
                self._sound(Sound.DONE)
                self._waiting[event.utterance_id] = _Pending(
                    self._clock() + self._settings.answer_timeout_seconds, event.utterance_id
                )
        elif kind == "final":
            self._answer(payload)
        elif kind == "cloud":
            self._from_cloud(payload)

    def _expire(self) -> None:
        now = self._clock()
        for book in (self._waiting, self._privacy):
            for key, pending in list(book.items()):
                if pending.deadline <= now:
                    del book[key]
                    self._given_up.add(pending.utterance_id)
                    _LOGGER.warning("no answer from the cloud in time for utterance %s", pending.utterance_id)
                    self._sound(Sound.ERROR)
                    self._reply(pending.utterance_id, pending.intent, say("no_cloud", self._language))
        for timer in self._timers.due(now):
            self._on_record({"type": "timer_finished", "timer_id": timer.timer_id, "seconds": timer.seconds})
            if self._player is not None and Sound.TIMER in self._sounds:
                self._ringing = True
                for _ in range(self._output.timer_rings):
                    self._player.play(self._sounds[Sound.TIMER])
                self._player.end(self._rung)
        if len(self._given_up) > 1000:
            self._given_up.clear()
        with self._idle:
            self._idle.notify_all()

    def _rung(self) -> None:
        self._ringing = False

    def _answer(self, result: RecognitionResult) -> None:
        utterance_id = result.utterance_id
        if utterance_id in self._given_up or utterance_id in self._answered:
            return  # the error was said already, or a final delivered twice: one answer only
        self._answered[utterance_id] = None
        while len(self._answered) > 1000:
            self._answered.popitem(last=False)
        self._waiting.pop(utterance_id, None)
        intent = self._matcher.match(result.text)
        self._on_record(
            {
                "type": "intent",
                "utterance_id": str(utterance_id),
                "intent": intent.name if intent else None,
                "slots": intent.slots if intent else {},
            }
        )
        if result.not_recognized == "no_recognizer":
            self._reply(utterance_id, None, say("no_recognizer", self._language))  # not "didn't catch that"
        elif not result.text.strip():
            self._reply(utterance_id, None, say("not_heard", self._language))
        elif intent is None:
            self._reply(utterance_id, None, say("unknown", self._language))
        else:
            self._act(utterance_id, intent)

    def _act(self, utterance_id: UUID, intent: Intent) -> None:
        handler = self._handlers.get(intent.name)
        if handler is None:
            self._reply(utterance_id, intent, say("unknown", self._language))  # e.g. a custom sentence's own intent
            return
        outcome = handler.handle(intent, self._context())
        match outcome:
            case Say(text):
                self._reply(utterance_id, intent, text)
            case Hush():
                self._cut()  # stops a reply or a ringing timer; nothing is said
                self._on_record(
                    {"type": "answer", "utterance_id": str(utterance_id), "intent": intent.name, "reply": ""}
                )
            case AskConsent(action):
                self._ask_consent_service(utterance_id, intent, action)
            case _:
                assert_never(outcome)

    def _context(self) -> Context:
        return Context(
            language=self._language,
            now_seconds=self._clock(),
            local_now=self._local_now(),
            timers=self._timers,
            ringing=self._ringing,
            volume=self._player,
            configured_volume=self._output.volume,
        )

    def _ask_consent_service(self, utterance_id: UUID, intent: Intent, action: PrivacyAction) -> None:
        if self._send_privacy is None:
            self._reply(utterance_id, intent, say("no_cloud", self._language))
            return
        request = PrivacyRequest(request_id=uuid.uuid4(), action=action, utterance_id=utterance_id)
        self._privacy[request.request_id] = _Pending(
            self._clock() + self._settings.answer_timeout_seconds, utterance_id, intent
        )
        self._send_privacy(request)

    def _from_cloud(self, message: UtteranceCancelled | PrivacyReply) -> None:
        if isinstance(message, UtteranceCancelled):
            self._waiting.pop(message.utterance_id, None)
            self._given_up.add(message.utterance_id)
            self._on_record(cancelled_record(message))
            return
        pending = self._privacy.pop(message.request_id, None)
        if pending is None:
            return  # not ours, or too late: the error was said
        text = consent_reply(message, self._language)
        self._reply(pending.utterance_id, pending.intent, text, deleted=message.deleted if message.ok else None)

    # -- output -------------------------------------------------------------------------

    def _cut(self) -> None:
        if self._player is not None:
            self._player.stop()
        self._speaker.silenced()
        self._ringing = False

    def _sound(self, sound: Sound) -> None:
        if self._player is not None and sound in self._sounds:
            self._player.play(self._sounds[sound])

    def _reply(self, utterance_id: UUID, intent: Intent | None, text: str, **extra: Any) -> None:
        _LOGGER.debug("reply to %s: %s", utterance_id, text)  # words the household hears: never above DEBUG
        record: Record = {
            "type": "answer",
            "utterance_id": str(utterance_id),
            "intent": intent.name if intent else None,
            "reply": text,
            **{k: v for k, v in extra.items() if v is not None},
        }
        saved = self._speaker.speak(utterance_id, text)
        if saved is not None:
            record["saved_to"] = str(saved)
        self._on_record(record)


def cancelled_record(message: UtteranceCancelled) -> dict[str, str]:
    """The event line of a request the cloud will not serve: another speaker answers, or
    the cloud's second wake check did not hear the wake word (a false wake: silence)."""
    kind = "cancelled_by_arbitration" if message.reason == "arbitration" else "wake_rejected_by_cloud"
    return {"type": kind, "utterance_id": str(message.utterance_id)}
