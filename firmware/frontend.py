"""The device front end: frames -> pre-roll -> wake word -> VAD endpointing -> events."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contract.audio import FRAME_BYTES, FRAME_SECONDS, bytes_to_seconds
from firmware.events import (
    FrontEndEvent,
    SpeechEnded,
    SpeechStarted,
    StateChanged,
    UtteranceAudio,
    UtteranceReady,
    WakeDetected,
)
from firmware.preroll import PreRoll
from firmware.segmenter import EndReason, SegmentEnd, Segmenter, SegmenterSettings, SpeechStart
from firmware.state import DeviceState, StateMachine
from firmware.vad import SpeechClassifier, VadSettings
from firmware.wake import WakeWordDetector

_LOGGER = logging.getLogger(__name__)

EventCallback = Callable[[FrontEndEvent], None]


class FrontEndSettings(BaseModel):
    """Pre-roll, VAD and endpointing settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    preroll_seconds: float = Field(1.5, ge=0, le=10, description="audio kept from before the wake word")
    vad: VadSettings = VadSettings()
    segmenter: SegmenterSettings = SegmenterSettings()


class _Utterance:
    """What the front end knows about the request in progress."""

    def __init__(self, wake_word: str, preroll: bytes, settings: FrontEndSettings) -> None:
        self.id: UUID = uuid.uuid4()
        self.wake_word = wake_word
        self.audio = bytearray(preroll)
        self.sequence = 0
        self.segmenter = Segmenter(settings.segmenter)
        self.vad = SpeechClassifier(settings.vad)


class FrontEnd:
    """Feed it 80 ms frames with `process`; subscribers receive typed events."""

    def __init__(self, settings: FrontEndSettings, detector: WakeWordDetector) -> None:
        self._settings = settings
        self._detector = detector
        self._preroll = PreRoll(settings.preroll_seconds)
        self._subscribers: list[EventCallback] = []
        self._machine = StateMachine(on_change=self._state_changed)
        self._utterance: _Utterance | None = None
        self._wake_at_seconds = 0.0
        self._quiet_until_seconds = 0.0
        self.audio_time_seconds = 0.0

    @property
    def state(self) -> DeviceState:
        """The device state."""
        return self._machine.state

    def subscribe(self, callback: EventCallback) -> None:
        """Receive every event, in order, on the thread that calls `process`."""
        self._subscribers.append(callback)

    def process(self, frame: bytes) -> None:
        """Handle one 80 ms frame of wire-format PCM."""
        if len(frame) != FRAME_BYTES:
            raise ValueError(f"frame must be {FRAME_BYTES} bytes, got {len(frame)}")
        state = self._machine.state
        if state is DeviceState.MUTED:
            return  # the audio is dropped here too, whatever a source still delivers
        self.audio_time_seconds += FRAME_SECONDS
        detection = self._detector.process(frame, armed=state is DeviceState.IDLE)
        if state is DeviceState.IDLE:
            self._preroll.push(frame)
            if detection is not None:
                self._start_utterance(detection.wake_word, detection.score)
        elif self._utterance is not None:
            self._continue_utterance(self._utterance, frame)

    def end_of_input(self) -> None:
        """The input ended: treat the rest as silence so the request in progress still ends
        by its own rules and nothing already said is dropped."""
        silence = bytes(FRAME_BYTES)
        while self._machine.state is DeviceState.LISTENING:
            self.process(silence)

    def cancel(self, utterance_id: UUID | None = None) -> None:
        """Abandon the request in progress (e.g. the user said 'never mind' on a button);
        with `utterance_id`, only if that is the one in progress."""
        if self._utterance is not None and utterance_id in (None, self._utterance.id):
            end = self._utterance.segmenter.cancel(EndReason.CANCELLED)
            if end is not None:
                self._finish(self._utterance, end)

    def quiet_for(self, seconds: float) -> None:
        """The speaker plays a sound now: the next `seconds` of microphone audio go into the
        request as silence, so the device never sends its own voice (audio time, not the
        wall clock, so a file runs through the same way)."""
        self._quiet_until_seconds = self.audio_time_seconds + seconds

    def mute(self) -> None:
        """Stop listening at once; a request in progress ends with reason `muted`, unsent."""
        if self._machine.state is DeviceState.MUTED:
            return
        utterance = self._utterance
        if utterance is not None:
            self._utterance = None
            self._emit(
                SpeechEnded(
                    audio_time_seconds=round(self.audio_time_seconds, 3),
                    utterance_id=utterance.id,
                    reason=EndReason.MUTED,
                )
            )
        self._preroll.clear()  # what was heard before the mute is not kept either
        self._machine.set_state(DeviceState.MUTED)

    def unmute(self) -> None:
        """Resume wake-word listening with freshly warmed buffers."""
        if self._machine.state is not DeviceState.MUTED:
            return
        self._detector.reset()
        self._machine.set_state(DeviceState.IDLE)

    def _start_utterance(self, wake_word: str, score: float) -> None:
        utterance = _Utterance(wake_word, self._preroll.take(), self._settings)
        self._utterance = utterance
        self._wake_at_seconds = self.audio_time_seconds
        self._machine.set_state(DeviceState.LISTENING)
        _LOGGER.info("wake word %s (score %.2f) at %.2f s", wake_word, score, self.audio_time_seconds)
        self._emit(
            WakeDetected(
                audio_time_seconds=round(self.audio_time_seconds, 3),
                utterance_id=utterance.id,
                wake_word=wake_word,
                score=round(score, 4),
            )
        )
        self._emit_audio(utterance, bytes(utterance.audio))

    def _continue_utterance(self, utterance: _Utterance, frame: bytes) -> None:
        if self.audio_time_seconds <= self._quiet_until_seconds + 1e-9:
            frame = bytes(len(frame))
        utterance.audio += frame
        self._emit_audio(utterance, frame)
        for step_seconds, is_speech in utterance.vad.classify(frame):
            event = utterance.segmenter.process(step_seconds, is_speech)
            if isinstance(event, SpeechStart):
                self._emit(
                    SpeechStarted(
                        audio_time_seconds=round(self._wake_at_seconds + event.offset_seconds, 3),
                        utterance_id=utterance.id,
                    )
                )
            elif isinstance(event, SegmentEnd):
                self._finish(utterance, event)
                return

    def _finish(self, utterance: _Utterance, end: SegmentEnd) -> None:
        self._utterance = None
        ended_at = round(self._wake_at_seconds + end.offset_seconds, 3)
        self._emit(SpeechEnded(audio_time_seconds=ended_at, utterance_id=utterance.id, reason=end.reason))
        self._machine.set_state(DeviceState.FINISHING)
        audio = bytes(utterance.audio)
        self._emit(
            UtteranceReady(
                audio_time_seconds=ended_at,
                utterance_id=utterance.id,
                wake_word=utterance.wake_word,
                end_reason=end.reason,
                duration_seconds=round(bytes_to_seconds(len(audio)), 3),
                audio=audio,
            )
        )
        self._machine.set_state(DeviceState.IDLE)

    def _emit_audio(self, utterance: _Utterance, audio: bytes) -> None:
        self._emit(
            UtteranceAudio(
                audio_time_seconds=round(self.audio_time_seconds, 3),
                utterance_id=utterance.id,
                sequence=utterance.sequence,
                audio=audio,
            )
        )
        utterance.sequence += 1

    def _state_changed(self, old: DeviceState, new: DeviceState) -> None:
        self._emit(StateChanged(audio_time_seconds=round(self.audio_time_seconds, 3), old=old, new=new))

    def _emit(self, event: FrontEndEvent) -> None:
        for callback in self._subscribers:
            try:
                callback(event)
            except Exception:
                # One broken consumer must not stop the device hearing its wake word.
                _LOGGER.exception("event subscriber failed on %s", event.type)
