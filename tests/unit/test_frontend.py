"""The front end on real openWakeWord models, real webrtcvad and real speech."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from contract.audio import SAMPLE_RATE_HZ
from firmware.errors import IllegalTransition
from firmware.events import (
    FrontEndEvent,
    SpeechEnded,
    SpeechStarted,
    StateChanged,
    UtteranceAudio,
    UtteranceReady,
    WakeDetected,
)
from firmware.frontend import FrontEnd, FrontEndSettings
from firmware.segmenter import EndReason
from firmware.state import DeviceState, StateMachine
from firmware.wake import BUNDLED_WAKE_WORDS, WakeWordDetector
from scripts.speech import pink_noise
from tests.conftest import FIXTURES, Pcm, feed, load_pcm

T = TypeVar("T")

MakeFrontEnd = Callable[..., tuple[FrontEnd, list[FrontEndEvent]]]


def of_type(events: list[FrontEndEvent], kind: type[T]) -> list[T]:
    return [e for e in events if isinstance(e, kind)]


def silence(seconds: float) -> Pcm:
    return np.zeros(int(seconds * SAMPLE_RATE_HZ), dtype=np.int16)


def speech_bounds_seconds(pcm: Pcm) -> tuple[float, float]:
    """First and last 10 ms frame with clearly audible energy."""
    frames = pcm[: len(pcm) // 160 * 160].astype(np.float64).reshape(-1, 160)
    loud = np.flatnonzero(np.sqrt((frames**2).mean(axis=1)) > 300)
    return loud[0] * 0.01, (loud[-1] + 1) * 0.01


def test_sample_request_is_detected_and_cut_whole(
    make_frontend: MakeFrontEnd, alexa_detector: WakeWordDetector, sample_pcm: Pcm
) -> None:
    frontend, events = make_frontend(alexa_detector)
    feed(frontend, sample_pcm)
    frontend.end_of_input()

    wakes = of_type(events, WakeDetected)
    assert [w.wake_word for w in wakes] == ["alexa"]
    assert wakes[0].score >= 0.5
    assert len(of_type(events, SpeechStarted)) == 1
    [ended] = of_type(events, SpeechEnded)
    assert ended.reason is EndReason.SILENCE
    [ready] = of_type(events, UtteranceReady)

    # The utterance is the input audio from pre-roll start to the end decision, so it
    # must begin before "Alexa" starts and reach past the last word.
    start_s, end_s = speech_bounds_seconds(sample_pcm)
    utterance = np.frombuffer(ready.audio, dtype="<i2")
    chunks = of_type(events, UtteranceAudio)
    preroll_samples = len(chunks[0].audio) // 2
    assert preroll_samples / SAMPLE_RATE_HZ >= 1.5
    begin_sample = round(wakes[0].audio_time_seconds * SAMPLE_RATE_HZ) - preroll_samples
    assert begin_sample / SAMPLE_RATE_HZ <= start_s
    overlap = sample_pcm[begin_sample : begin_sample + len(utterance)]
    assert np.array_equal(utterance[: len(overlap)], overlap)
    assert not utterance[len(overlap) :].any()  # past the file's end: the silence fed by end_of_input
    assert (begin_sample + len(utterance)) / SAMPLE_RATE_HZ >= end_s
    # Ended promptly: within the silence window (+ one 80 ms frame) of the last word.
    assert end_s + 0.7 - 0.1 <= ended.audio_time_seconds <= end_s + 0.7 + 0.25

    # The streamed chunks, in order, are exactly the utterance.
    assert [c.sequence for c in chunks] == list(range(len(chunks)))
    assert b"".join(c.audio for c in chunks) == ready.audio

    states = [(e.old, e.new) for e in of_type(events, StateChanged)]
    assert states == [
        (DeviceState.IDLE, DeviceState.LISTENING),
        (DeviceState.LISTENING, DeviceState.FINISHING),
        (DeviceState.FINISHING, DeviceState.IDLE),
    ]


@pytest.mark.parametrize("path", sorted((FIXTURES / "positives").glob("*.wav")), ids=lambda p: p.stem)
def test_each_shipped_wake_word_is_detected_on_its_positives(
    path: Path, make_frontend: MakeFrontEnd, all_words_detector: WakeWordDetector
) -> None:
    expected = path.stem.rsplit("_", 1)[0]
    assert expected in BUNDLED_WAKE_WORDS
    frontend, events = make_frontend(all_words_detector)
    feed(frontend, load_pcm(path))
    frontend.end_of_input()
    assert [w.wake_word for w in of_type(events, WakeDetected)] == [expected]
    assert [e.reason for e in of_type(events, SpeechEnded)] == [EndReason.SILENCE]


def test_one_word_command_ends_within_the_silence_window(
    make_frontend: MakeFrontEnd, alexa_detector: WakeWordDetector
) -> None:
    wake, stop = load_pcm(FIXTURES / "alexa_only.wav"), load_pcm(FIXTURES / "stop.wav")
    audio = np.concatenate([wake, silence(0.3), stop, silence(3.0)])
    frontend, events = make_frontend(alexa_detector)
    feed(frontend, audio)
    [ended] = of_type(events, SpeechEnded)
    assert ended.reason is EndReason.SILENCE
    _, stop_end = speech_bounds_seconds(np.concatenate([wake, silence(0.3), stop]))
    assert ended.audio_time_seconds <= stop_end + 0.7 + 0.25
    [ready] = of_type(events, UtteranceReady)
    # "stop" itself is in the utterance, not just the wake word.
    assert ready.duration_seconds >= (len(wake) + len(stop)) / SAMPLE_RATE_HZ


def test_no_speech_after_wake_cancels(make_frontend: MakeFrontEnd, alexa_detector: WakeWordDetector) -> None:
    frontend, events = make_frontend(alexa_detector)
    feed(frontend, np.concatenate([load_pcm(FIXTURES / "alexa_only.wav"), silence(6.0)]))
    assert [e.reason for e in of_type(events, SpeechEnded)] == [EndReason.NO_SPEECH]
    assert of_type(events, SpeechStarted) == []
    assert frontend.state is DeviceState.IDLE


def test_cancel_by_id_ends_only_that_request(make_frontend: MakeFrontEnd, alexa_detector: WakeWordDetector) -> None:
    """The satellite asks to cancel a request by id from another thread; one that has
    already ended (and a newer one in its place) must not be cut by a stale request."""
    import uuid

    frontend, events = make_frontend(alexa_detector)
    feed(frontend, load_pcm(FIXTURES / "alexa_only.wav"))
    [wake] = of_type(events, WakeDetected)
    frontend.cancel(uuid.uuid4())  # someone else's
    assert frontend.state is DeviceState.LISTENING and of_type(events, SpeechEnded) == []
    frontend.cancel(wake.utterance_id)
    [ended] = of_type(events, SpeechEnded)
    assert (ended.utterance_id, ended.reason) == (wake.utterance_id, EndReason.CANCELLED)
    assert frontend.state is DeviceState.IDLE


def test_noise_that_sounds_like_speech_is_capped(make_frontend: MakeFrontEnd, alexa_detector: WakeWordDetector) -> None:
    noise = pink_noise(20.0, np.random.default_rng(3), rms=0.2)
    frontend, events = make_frontend(alexa_detector)
    feed(frontend, np.concatenate([load_pcm(FIXTURES / "alexa_only.wav"), noise]))
    [ended] = of_type(events, SpeechEnded)
    [wake] = of_type(events, WakeDetected)
    assert ended.reason is EndReason.MAX_LENGTH
    assert ended.audio_time_seconds - wake.audio_time_seconds == pytest.approx(15.0, abs=0.1)


def test_mute_drops_audio_and_ends_the_request_unsent(
    make_frontend: MakeFrontEnd, alexa_detector: WakeWordDetector, sample_pcm: Pcm
) -> None:
    frontend, events = make_frontend(alexa_detector)
    half = len(sample_pcm) // 2
    feed(frontend, sample_pcm[:half])
    assert frontend.state is DeviceState.LISTENING
    frontend.mute()
    assert [e.reason for e in of_type(events, SpeechEnded)] == [EndReason.MUTED]
    before = len(events)
    feed(frontend, sample_pcm)  # a whole wake + request while muted
    assert len(events) == before and frontend.state is DeviceState.MUTED
    assert of_type(events, UtteranceReady) == []
    frontend.unmute()
    feed(frontend, sample_pcm)
    assert len(of_type(events, UtteranceReady)) == 1


def test_a_failing_subscriber_does_not_stop_the_device(
    make_frontend: MakeFrontEnd, alexa_detector: WakeWordDetector, sample_pcm: Pcm
) -> None:
    frontend, events = make_frontend(alexa_detector)

    def broken(_event: FrontEndEvent) -> None:
        raise RuntimeError("consumer bug")

    frontend.subscribe(broken)
    feed(frontend, sample_pcm)
    frontend.end_of_input()
    assert len(of_type(events, UtteranceReady)) == 1


def test_state_machine_rejects_illegal_moves() -> None:
    seen: list[tuple[DeviceState, DeviceState]] = []
    machine = StateMachine(on_change=lambda old, new: seen.append((old, new)))
    with pytest.raises(IllegalTransition):
        machine.set_state(DeviceState.FINISHING)
    machine.set_state(DeviceState.MUTED)
    with pytest.raises(IllegalTransition):
        machine.set_state(DeviceState.LISTENING)
    assert seen == [(DeviceState.IDLE, DeviceState.MUTED)]


def test_refractory_time_suppresses_a_second_wake(
    make_frontend: MakeFrontEnd, alexa_detector: WakeWordDetector
) -> None:
    wake = load_pcm(FIXTURES / "alexa_only.wav")
    frontend, events = make_frontend(alexa_detector, FrontEndSettings())
    # "Alexa ... Alexa" with the second one 1 s later: the device is listening by then,
    # and the repeat is part of the request, not a new wake.
    feed(frontend, np.concatenate([wake, silence(0.2), wake, silence(3.0)]))
    assert len(of_type(events, WakeDetected)) == 1


def test_the_speakers_own_wake_sound_never_enters_the_request(
    alexa_detector: WakeWordDetector, make_frontend: MakeFrontEnd, sample_pcm: Pcm
) -> None:
    frontend, events = make_frontend(alexa_detector)
    frontend.subscribe(lambda e: frontend.quiet_for(0.4) if isinstance(e, WakeDetected) else None)
    feed(frontend, sample_pcm)
    frontend.end_of_input()
    (ready,) = of_type(events, UtteranceReady)
    audio = np.frombuffer(ready.audio, dtype="<i2")
    preroll = len(next(e for e in of_type(events, UtteranceAudio) if e.sequence == 0).audio) // 2
    assert np.abs(audio[preroll - 1280 : preroll]).max() > 0  # before the wake word fired: the room
    assert not audio[preroll : preroll + int(0.4 * SAMPLE_RATE_HZ)].any()  # while the sound plays: silence
    assert np.abs(audio[preroll + int(0.48 * SAMPLE_RATE_HZ) :]).max() > 1000  # then the request itself
