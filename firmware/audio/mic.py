"""The microphone, through PyAudio (PortAudio over ALSA on a Pi)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from contract.audio import CHANNELS, FRAME_SAMPLES, SAMPLE_RATE_HZ
from firmware import native_stderr
from firmware.errors import AudioInputError

if TYPE_CHECKING:
    import pyaudio

_LOGGER = logging.getLogger(__name__)


def _quiet_stderr() -> contextlib.AbstractContextManager[None]:
    """Silence C-level stderr while PortAudio probes its host APIs.

    ALSA (unknown PCM cards.pcm.rear ...) and JACK (server is not running ...) print
    dozens of lines on every start-up; they would bury the one-line error a user needs.
    """
    return native_stderr.filtered(lambda _line: False)


_HARDWARE = {"input": "microphone", "output": "speaker"}


@dataclass(frozen=True)
class InputDevice:
    """One capture device as PortAudio sees it."""

    index: int
    name: str
    max_input_channels: int
    default_sample_rate_hz: float


def open_pyaudio() -> pyaudio.PyAudio:
    """PyAudio, initialised without PortAudio's start-up noise on stderr."""
    try:
        import pyaudio
    except ImportError as err:
        raise AudioInputError("mic", "PyAudio is not installed (pip install 'earmark[device]')") from err
    with _quiet_stderr():
        return pyaudio.PyAudio()


def devices_of(pa: pyaudio.PyAudio, channels_key: str) -> list[InputDevice]:
    """Devices with channels of one direction (`maxInputChannels` or `maxOutputChannels`)."""
    devices = []
    for index in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(index)
        if int(info[channels_key]) > 0:
            devices.append(
                InputDevice(
                    index=index,
                    name=str(info["name"]),
                    max_input_channels=int(info[channels_key]),
                    default_sample_rate_hz=float(info["defaultSampleRate"]),
                )
            )
    return devices


def _inputs(pa: pyaudio.PyAudio) -> list[InputDevice]:
    return devices_of(pa, "maxInputChannels")


def list_output_devices() -> list[InputDevice]:
    """All playback devices PortAudio can open (channel counts in `max_input_channels`)."""
    pa = open_pyaudio()
    try:
        return devices_of(pa, "maxOutputChannels")
    finally:
        with _quiet_stderr():
            pa.terminate()


def list_input_devices() -> list[InputDevice]:
    """All capture devices PortAudio can open."""
    pa = open_pyaudio()
    try:
        return _inputs(pa)
    finally:
        with _quiet_stderr():
            pa.terminate()


def choose_device(devices: list[InputDevice], selector: str | None, kind: str = "input") -> InputDevice:
    """Pick a device by index, exact name, or a unique case-insensitive name substring."""
    label = f"mic {selector!r}" if selector else "mic"
    if kind != "input":
        label = f"speaker {selector!r}" if selector else "speaker"
    if not devices:
        raise AudioInputError(label, f"no audio {kind} devices found (is a {_HARDWARE[kind]} connected?)")
    if selector is None or selector == "":
        return devices[0]
    if selector.isdigit():
        for device in devices:
            if device.index == int(selector):
                return device
        raise AudioInputError(label, f"no {kind} device with index {selector}; see `earmark device devices`")
    exact = [d for d in devices if d.name == selector]
    if exact:
        return exact[0]
    matches = [d for d in devices if selector.lower() in d.name.lower()]
    if len(matches) == 1:
        return matches[0]
    names = ", ".join(repr(d.name) for d in (matches or devices))
    if matches:
        raise AudioInputError(label, f"matches several {kind} devices ({names}); be more specific")
    raise AudioInputError(label, f"no {kind} device matches; available: {names}")


class MicrophoneSource:
    """80 ms frames from a PortAudio input device at 16 kHz mono S16_LE."""

    def __init__(self, selector: str | None = None) -> None:
        self._pa = open_pyaudio()
        try:
            self.device = choose_device(_inputs(self._pa), selector)
            self.name = f"mic {self.device.name!r}"
            import pyaudio

            self._stream = self._pa.open(
                format=pyaudio.paInt16,
                channels=CHANNELS,
                rate=SAMPLE_RATE_HZ,
                input=True,
                input_device_index=self.device.index,
                frames_per_buffer=FRAME_SAMPLES,
            )
        except OSError as err:
            self._terminate()
            raise AudioInputError(
                f"mic {selector!r}" if selector else "mic",
                f"cannot open for 16 kHz mono capture ({err}); on ALSA use a 'plughw:' or 'default' device",
            ) from err
        except BaseException:
            self._terminate()
            raise
        self._capturing = threading.Event()
        self._capturing.set()
        self._closed = False
        _LOGGER.info("capturing from %s (index %d)", self.device.name, self.device.index)

    def pause(self) -> None:
        """Stop capturing (mute): the device reads nothing from the microphone until resume()."""
        self._capturing.clear()

    def resume(self) -> None:
        """Capture again."""
        self._capturing.set()

    def frames(self) -> Iterator[bytes]:
        """Yield frames until closed (b"" heartbeats while paused); an overflow loses samples
        rather than stopping capture."""
        while not self._closed:
            if not self._capturing.is_set():
                if self._stream.is_active():
                    self._stream.stop_stream()
                self._capturing.wait(0.5)
                yield b""  # a heartbeat without audio, so the service's watchdog still sees a live loop
                continue
            if self._stream.is_stopped():
                self._stream.start_stream()
            yield self._stream.read(FRAME_SAMPLES, exception_on_overflow=False)

    def close(self) -> None:
        """Release the device."""
        self._closed = True
        with contextlib.suppress(OSError):
            self._stream.stop_stream()
            self._stream.close()
        self._terminate()

    def _terminate(self) -> None:
        with _quiet_stderr():
            self._pa.terminate()
