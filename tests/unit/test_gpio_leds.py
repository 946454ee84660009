"""Status lights: the ReSpeaker 2-Mic HAT's APA102s on gpiozero's mock SPI, and the breadboard's LEDs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockSPIDevice
from pydantic import ValidationError

from firmware.state import DeviceState
from hardware.apa102 import APA102, PRIORITY, HatLights, frame_bytes, most_important
from hardware.gpio import GpioSettings, StatusLights, make_lights

Rgb = tuple[int, int, int]
TIMEOUT_SECONDS = 10.0  # generous: these must pass beside busy cores

OFF: Rgb = (0, 0, 0)
EXPECTED: dict[str, list[Rgb]] = {
    "error": [(255, 64, 0)] * 3,
    "muted": [(255, 0, 0)] * 3,
    "speaking": [(0, 255, 0)] * 3,
    "thinking": [(0, 255, 255), OFF, OFF],  # the spinner's first frame
    "listening": [(0, 0, 255)] * 3,
    "offline": [OFF, (255, 255, 255), OFF],
}
# One way to make each condition true on its own.
ALONE: dict[str, tuple[DeviceState, dict[str, bool]]] = {
    "error": (DeviceState.IDLE, {"error": True}),
    "muted": (DeviceState.MUTED, {}),
    "speaking": (DeviceState.IDLE, {"speaking": True}),
    "thinking": (DeviceState.FINISHING, {}),
    "listening": (DeviceState.LISTENING, {}),
    "offline": (DeviceState.IDLE, {"offline": True}),
}


class Apa102Chain(MockSPIDevice):  # type: ignore[misc]
    """The HAT's LED chain as gpiozero's mock SPI slave on SPI0 with CE1 (GPIO7):
    keeps every transaction's bytes, so a test sees exactly what the LEDs would."""

    def __init__(self, factory: MockFactory) -> None:
        super().__init__(clock_pin=11, mosi_pin=10, select_pin=7, pin_factory=factory)
        self.frames: list[bytes] = []
        self._arrived = threading.Condition()

    def on_select(self) -> None:
        super().on_select()  # selected: starts a new transaction
        if self.select_pin.state != self.select_high and self.rx_buf:  # deselected: it ended
            bits = "".join("1" if bit else "0" for bit in self.rx_buf)
            data = bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8))
            with self._arrived:
                self.frames.append(data)
                self._arrived.notify_all()

    def wait_for(self, done: Callable[[list[bytes]], bool]) -> list[bytes]:
        """Wait (bounded) until the frames so far satisfy `done`; return them."""
        with self._arrived:
            ok = self._arrived.wait_for(lambda: done(self.frames), TIMEOUT_SECONDS)
            assert ok, [frame.hex() for frame in self.frames]
            return list(self.frames)

    def last(self) -> bytes:
        """The most recent transaction."""
        with self._arrived:
            return self.frames[-1]


def decode(frame: bytes) -> tuple[int, list[Rgb]]:
    """Check a 3-LED frame's start and end frames; return its brightness and (R, G, B) per LED."""
    assert len(frame) == 4 + 3 * 4 + 5, frame.hex()
    assert frame[:4] == bytes(4) and frame[-5:] == bytes(5), frame.hex()
    leds = [frame[i : i + 4] for i in range(4, 16, 4)]
    headers = {led[0] for led in leds}
    assert len(headers) == 1, frame.hex()
    header = headers.pop()
    assert header & 0xE0 == 0xE0, frame.hex()
    return header & 0x1F, [(led[3], led[2], led[1]) for led in leds]


@pytest.fixture
def factory(monkeypatch: pytest.MonkeyPatch) -> Iterator[MockFactory]:
    pins = MockFactory()
    # gpiozero 2.0.1's software SPI bus (what MockFactory's SPI is) builds its Device without
    # passing the factory on, so the default factory must be the mock too, as gpiozero's own
    # tests arrange; otherwise it probes lgpio and warns.
    monkeypatch.setattr(Device, "pin_factory", pins)
    yield pins
    pins.reset()


@pytest.fixture
def chain(factory: MockFactory) -> Iterator[Apa102Chain]:
    # Before anything opens the port: the slave's clock and select pins must be its own kind.
    device = Apa102Chain(factory)
    yield device
    device.close()


@pytest.fixture
def hat(factory: MockFactory, chain: Apa102Chain) -> Iterator[HatLights]:
    lights = HatLights(brightness=8, pin_factory=factory)
    yield lights
    lights.close()


def test_an_update_is_start_frame_leds_as_brightness_blue_green_red_then_zeros() -> None:
    assert frame_bytes([(1, 2, 3), (4, 5, 6), (7, 8, 9)], 5) == bytes.fromhex(
        "00000000e5030201e5060504e50908070000000000"
    )
    # The end frame grows by one byte per 16 LEDs: half a clock of delay per LED.
    assert frame_bytes([OFF] * 17, 0)[-6:] == bytes(6)
    with pytest.raises(ValueError, match="bytes must be in range"):
        frame_bytes([(256, 0, 0)], 1)


def test_the_driver_writes_one_transaction_to_spi0_ce1(factory: MockFactory, chain: Apa102Chain) -> None:
    leds = APA102(3, pin_factory=factory)  # the HAT's port and device are the defaults
    leds.show([(255, 0, 0), (0, 255, 0), (0, 0, 255)], 31)
    assert chain.frames == [bytes.fromhex("00000000ff0000ffff00ff00ffff00000000000000")]
    leds.off()
    assert chain.last() == bytes.fromhex("00000000" + "e0000000" * 3 + "0000000000")
    with pytest.raises(ValueError, match="2 colours for 3 LEDs"):
        leds.show([OFF, OFF], 1)
    leds.close()


def test_the_hat_starts_dark(chain: Apa102Chain, hat: HatLights) -> None:
    assert decode(chain.frames[0]) == (0, [OFF] * 3)  # a crashed run's colours do not linger
    assert not any(hat.lit().values())


@pytest.mark.parametrize("condition", PRIORITY)
def test_each_condition_has_its_own_colours(condition: str, chain: Apa102Chain, hat: HatLights) -> None:
    state, flags = ALONE[condition]
    hat.show(state, **flags)
    assert hat.lit() == {name: name == condition for name in PRIORITY}
    assert decode(chain.frames[1]) == (8, EXPECTED[condition])  # written before show() returns


def test_the_exact_bytes_of_muted(chain: Apa102Chain, hat: HatLights) -> None:
    hat.show(DeviceState.MUTED)
    assert chain.last() == bytes.fromhex("00000000" + "e80000ff" * 3 + "0000000000")


def test_no_two_conditions_look_alike() -> None:
    looks = [tuple(colours) for colours in EXPECTED.values()]
    assert len(set(looks)) == len(looks)
    lit_colours = [{rgb for rgb in colours if rgb != OFF} for colours in EXPECTED.values()]
    assert all(len(colours) == 1 for colours in lit_colours)
    assert len({colours.pop() for colours in lit_colours}) == len(PRIORITY)  # distinct colours, too


def test_the_most_important_condition_wins(chain: Apa102Chain, hat: HatLights) -> None:
    cases: list[tuple[DeviceState, dict[str, bool], str | None]] = [
        (DeviceState.MUTED, {"error": True, "speaking": True, "offline": True}, "muted"),
        (DeviceState.IDLE, {"error": True, "speaking": True, "offline": True}, "error"),
        (DeviceState.MUTED, {"speaking": True, "offline": True}, "muted"),
        (DeviceState.FINISHING, {"speaking": True, "offline": True}, "speaking"),
        (DeviceState.LISTENING, {"speaking": True}, "speaking"),
        (DeviceState.FINISHING, {"offline": True}, "thinking"),
        (DeviceState.LISTENING, {"offline": True}, "listening"),
        (DeviceState.IDLE, {"offline": True}, "offline"),
        (DeviceState.IDLE, {}, None),
    ]
    for state, flags, winner in cases:
        hat.show(state, **flags)
        assert most_important(state, **{"offline": False, "error": False, "speaking": False, **flags}) == winner
        assert hat.lit() == {name: name == winner for name in PRIORITY}, (state, flags)
        expected = EXPECTED[winner] if winner is not None else [OFF] * 3
        if winner != "thinking":  # the spinner may already have moved on
            assert decode(chain.last()) == (8, expected), (state, flags)
    assert decode(chain.last()) == (8, [OFF] * 3)  # nothing true: dark


def test_thinking_spins_until_something_else_is_shown(chain: Apa102Chain, hat: HatLights) -> None:
    hat.show(DeviceState.FINISHING)
    cyan = EXPECTED["thinking"][0]

    def positions(frames: list[bytes]) -> list[int]:
        lit = []
        for frame in frames[1:]:
            _, colours = decode(frame)
            assert sorted(colours) == sorted([cyan, OFF, OFF])  # one LED at a time, always cyan
            lit.append(colours.index(cyan))
        return lit

    frames = chain.wait_for(lambda frames: len(set(positions(frames))) == 3)
    steps = positions(frames)
    assert steps[:3] == [0, 1, 2]  # it moves along the row, one LED per step
    hat.show(DeviceState.FINISHING)  # the same condition again: the spinner keeps going
    hat.show(DeviceState.LISTENING)
    assert decode(chain.last()) == (8, EXPECTED["listening"])
    count = len(chain.frames)
    hat.show(DeviceState.LISTENING)
    assert len(chain.frames) == count  # steady and unchanged: nothing is rewritten


def test_close_stops_the_thread_and_turns_the_leds_off(factory: MockFactory, chain: Apa102Chain) -> None:
    hat = HatLights(brightness=8, pin_factory=factory)
    hat.show(DeviceState.FINISHING)
    chain.wait_for(lambda frames: len(frames) >= 3)  # the animation thread is writing
    hat.close()
    assert not [thread for thread in threading.enumerate() if thread.name == "earmark-hat-lights"]
    assert decode(chain.last()) == (0, [OFF] * 3)
    count = len(chain.frames)
    hat.show(DeviceState.MUTED)  # after close: nothing
    hat.close()  # twice is harmless
    assert len(chain.frames) == count
    APA102(3, pin_factory=factory).close()  # the SPI port and its pins were released


def test_brightness_is_bounded(factory: MockFactory, chain: Apa102Chain) -> None:
    for bad in (0, 32, -1):
        with pytest.raises(ValidationError):
            GpioSettings(lights="respeaker_2mic", hat_brightness=bad)
    with pytest.raises(ValueError, match="brightness"):
        frame_bytes([OFF], 32)
    with pytest.raises(ValueError, match="brightness"):
        HatLights(brightness=40, pin_factory=factory)
    assert GpioSettings().hat_brightness == 8
    lights = make_lights(GpioSettings(enabled=True, lights="respeaker_2mic", hat_brightness=31), factory)
    lights.show(DeviceState.LISTENING)
    assert decode(chain.last()) == (31, EXPECTED["listening"])  # full current: header 0xFF
    lights.close()


def test_settings_choose_the_lights(factory: MockFactory, chain: Apa102Chain) -> None:
    hat = make_lights(GpioSettings(enabled=True, lights="respeaker_2mic"), factory)
    hat.show(DeviceState.MUTED)
    assert decode(chain.last()) == (8, EXPECTED["muted"])
    used = {info.name for info in factory.pins}
    assert used == {"GPIO7", "GPIO9", "GPIO10", "GPIO11"}  # SPI0 only: no LED pin, no GPIO12
    hat.close()

    frames = len(chain.frames)
    gpio = make_lights(GpioSettings(enabled=True), factory)
    gpio.show(DeviceState.MUTED)
    assert factory.pin(13).state and len(chain.frames) == frames  # the breadboard's muted LED, no SPI
    gpio.close()


def test_breadboard_speaking_blinks_the_listening_led_fast(factory: MockFactory) -> None:
    lights = StatusLights(GpioSettings(enabled=True), pin_factory=factory)
    lights.show(DeviceState.IDLE, speaking=True)
    assert lights.lit() == {"listening": True, "thinking": False, "muted": False, "error": False, "offline": False}
    pin = factory.pin(5)
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while {state.state for state in pin.states[-4:]} != {True, False} and time.monotonic() < deadline:
        threading.Event().wait(0.01)  # poll gpiozero's blink thread, bounded by the deadline
    assert {state.state for state in pin.states[-4:]} == {True, False}  # it really blinks
    lights.show(DeviceState.MUTED, speaking=True)  # muted only stops the microphone
    assert lights.lit()["listening"] and lights.lit()["muted"]
    lights.show(DeviceState.IDLE)
    assert lights.lit() == dict.fromkeys(("listening", "thinking", "muted", "error", "offline"), False)
    assert not pin.state
    lights.close()
