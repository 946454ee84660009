"""Mute button and LEDs on gpiozero's MockFactory; mute stops audio at the source."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from contract.audio import FRAME_BYTES
from firmware.events import FrontEndEvent, WakeDetected
from firmware.frontend import FrontEnd
from firmware.mute import MuteState, gated
from firmware.state import DeviceState
from firmware.wake import WakeWordDetector
from hardware.gpio import GpioSettings, MuteButton, StatusLights
from tests.conftest import Pcm

MakeFrontEnd = Callable[..., tuple[FrontEnd, list[FrontEndEvent]]]


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    pins = MockFactory()
    yield pins
    pins.reset()


class CountingSource:
    """Stands in for the microphone's pause/resume (the real one stops its PortAudio stream)."""

    def __init__(self, pcm: Pcm, loops: int) -> None:
        data = pcm.astype("<i2").tobytes()
        data += bytes(-len(data) % FRAME_BYTES)
        self._frames = [data[i : i + FRAME_BYTES] for i in range(0, len(data), FRAME_BYTES)] * loops
        self.paused = False
        self.read_while_paused = 0

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def frames(self) -> Iterator[bytes]:
        for frame in self._frames:
            if self.paused:
                self.read_while_paused += 1
            yield frame


def test_the_mute_button_stops_audio_before_wake_word_vad_or_network(
    tmp_path: Path, factory: MockFactory, make_frontend: MakeFrontEnd, alexa_detector: WakeWordDetector, sample_pcm: Pcm
) -> None:
    mute = MuteState(tmp_path / "mute.json")
    button = MuteButton(17, mute, pin_factory=factory)
    frontend, events = make_frontend(alexa_detector)
    mute.subscribe(lambda muted: frontend.mute() if muted else frontend.unmute())
    source = CountingSource(sample_pcm, loops=3)
    pin = factory.pin(17)
    processed = 0
    for index, frame in enumerate(gated(source.frames(), mute, source)):
        if not frame:
            continue  # a heartbeat while muted: no audio in it
        frontend.process(frame)
        processed += 1
        if index == 5:
            pin.drive_low()  # press: mute
            pin.drive_high()
    assert mute.muted and frontend.state is DeviceState.MUTED
    assert source.paused  # the microphone itself stopped
    assert processed == 6  # not one frame after the press reached the front end
    assert [e for e in events if isinstance(e, WakeDetected)] == []

    # The state survives a restart: a new process reads it and stays muted.
    again = MuteState(tmp_path / "mute.json")
    assert again.muted
    pin.drive_low()  # press again: unmute
    pin.drive_high()
    assert not mute.muted and not source.paused
    assert not MuteState(tmp_path / "mute.json").muted
    button.close()


def test_a_damaged_mute_file_stays_muted(tmp_path: Path) -> None:
    (tmp_path / "mute.json").write_text("{not json")
    assert MuteState(tmp_path / "mute.json").muted


def test_status_lights_follow_the_device(factory: MockFactory) -> None:
    lights = StatusLights(GpioSettings(enabled=True), pin_factory=factory)
    lights.show(DeviceState.LISTENING)
    assert lights.lit() == {"listening": True, "thinking": False, "muted": False, "error": False, "offline": False}
    lights.show(DeviceState.FINISHING, offline=True)
    assert lights.lit()["thinking"] and lights.lit()["offline"] and not lights.lit()["listening"]
    lights.show(DeviceState.MUTED, error=True)
    assert lights.lit() == {"listening": False, "thinking": False, "muted": True, "error": True, "offline": False}
    assert factory.pin(13).state  # the muted LED's pin is really driven
    lights.close()
