"""The device assembled in one place (`firmware/device.py`), through the seams its callers use:
the input, the loudspeaker and the status lights. The real models and the real Wyoming server."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware.audio.echo import EchoCanceller, EchoReference
from firmware.audio.noise import NoiseCleaner
from firmware.audio.output_settings import OutputSettings
from firmware.audio.source import SAMPLE_WAV, AudioSource
from firmware.audio.wav import WavFileSource
from firmware.device import assemble, cleaners
from firmware.errors import ConfigError
from firmware.events import FrontEndEvent
from firmware.mute import MuteState
from firmware.satellite.settings import DeviceMode
from firmware.settings import DeviceSettings
from firmware.state import DeviceState


class Sample:
    """Opens the bundled request as the input, whatever the settings name; remembers how."""

    def __init__(self) -> None:
        self.opened_with: tuple[str, str | None] | None = None
        self.closed = False
        self.name = str(SAMPLE_WAV)

    def __call__(self, spec: str, device: str | None) -> AudioSource:
        self.opened_with = (spec, device)
        self._wav = WavFileSource(SAMPLE_WAV)
        return self

    def frames(self) -> Iterator[bytes]:
        """The sample's frames."""
        return self._wav.frames()

    def close(self) -> None:
        """Remember it."""
        self.closed = True


class Lights:
    """Status lights that remember what they showed."""

    def __init__(self) -> None:
        self.shown: list[tuple[DeviceState, bool, bool]] = []

    def show(self, state: DeviceState, *, offline: bool = False, speaking: bool = False) -> None:
        self.shown.append((state, offline, speaking))


@pytest.fixture
def settings(tmp_path: Path) -> DeviceSettings:
    return DeviceSettings.model_validate(
        {
            "input": "-",  # not a file: the sample runs unpaced and the front end ends with it
            "state_dir": str(tmp_path),
            "satellite": {"host": "127.0.0.1", "port": 0, "zeroconf": False},
            "output": {"sounds": False, "volume": 0.5},
        }
    )


def describe(port: int) -> dict[str, object]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b'{"type": "describe"}\n')
        header: dict[str, object] = json.loads(conn.makefile("rb").readline(16384))
        return header


def test_home_assistant_mode_through_the_seams(settings: DeviceSettings) -> None:
    source = Sample()
    outputs: list[OutputSettings] = []

    def no_loudspeaker(output: OutputSettings, reference: EchoReference | None) -> None:
        outputs.append(output)

    device = assemble(settings, DeviceMode.HOME_ASSISTANT, source_factory=source, player_factory=no_loudspeaker)
    events: list[FrontEndEvent] = []
    try:
        device.frontend.subscribe(events.append)
        assert device.link is not None and device.session is None
        assert describe(device.link.port)["type"] == "info"  # serving before the first frame
        assert device.offline()  # no Home Assistant runs it yet
        device.run()
    finally:
        device.close()
    assert source.opened_with == ("-", None) and source.closed
    assert outputs == [OutputSettings(sounds=False, volume=0.5)]  # the one output table
    assert [e.type for e in events if e.type in ("wake_detected", "speech_ended")] == ["wake_detected", "speech_ended"]
    with pytest.raises(OSError):
        describe(device.link.port)  # closed with the device


def test_a_muted_device_hears_nothing_and_its_lights_say_so(settings: DeviceSettings, tmp_path: Path) -> None:
    mute = MuteState(tmp_path / "mute.json")
    mute.set(True)
    lights = Lights()
    events: list[FrontEndEvent] = []
    device = assemble(settings, None, mute=mute, lights=lights, source_factory=Sample())
    try:
        device.frontend.subscribe(events.append)
        device.run()
    finally:
        device.close()
    assert not any(e.type == "wake_detected" for e in events)
    assert lights.shown and all(state is DeviceState.MUTED for state, _, _ in lights.shown)

    mute.set(False)
    lights = Lights()
    device = assemble(settings, None, mute=mute, lights=lights, source_factory=Sample())
    try:
        device.frontend.subscribe(events.append)
        device.run()
    finally:
        device.close()
    assert any(e.type == "wake_detected" for e in events)
    assert (DeviceState.LISTENING, False, False) in lights.shown  # no mode: never offline


def test_what_cannot_be_assembled_closes_what_was_opened(settings: DeviceSettings) -> None:
    source = Sample()
    with pytest.raises(ConfigError, match="device identity"):
        assemble(settings, DeviceMode.CLOUD, source_factory=source)  # no identity to stream as
    assert source.closed


def test_the_microphone_is_cleaned_only_as_the_settings_ask(settings: DeviceSettings) -> None:
    plain = assemble(settings, None, source_factory=Sample())
    plain.close()
    assert plain.cleaners == ()  # no loudspeaker to cancel, no noise suppression asked for

    tuned = DeviceSettings.model_validate(
        {**settings.model_dump(exclude_unset=True), "microphone": {"noise_suppression": "moderate"}}
    )
    events: list[FrontEndEvent] = []
    device = assemble(tuned, None, source_factory=Sample())
    try:
        assert [type(c) for c in device.cleaners] == [NoiseCleaner]
        device.frontend.subscribe(events.append)
        device.run()
    finally:
        device.close()
    assert any(e.type == "wake_detected" for e in events)  # the request is still heard through it


def test_a_live_input_with_a_loudspeaker_is_cleaned_of_its_echo_first(settings: DeviceSettings) -> None:
    tuned = DeviceSettings.model_validate(
        {**settings.model_dump(exclude_unset=True), "microphone": {"noise_suppression": "low"}}
    )
    assert [type(c) for c in cleaners(EchoReference(), tuned)] == [EchoCanceller, NoiseCleaner]
    assert cleaners(None, settings) == ()  # no loudspeaker opened
