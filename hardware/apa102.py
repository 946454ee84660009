"""APA102 RGB LEDs over gpiozero's SPI, and the ReSpeaker 2-Mic Pi HAT's three as status lights.

The HAT wires its three APA102s to SPI0's MOSI (GPIO10) and SCLK (GPIO11) only. Seeed's
own driver (respeaker/mic_hat `interfaces/apa102.py`) opens bus 0, device 1, so the
kernel toggles CE1 (GPIO7), which the LEDs ignore, and CE0 stays free. Unlike the 4-Mic
HAT (GPIO5) the 2-Mic HAT has no LED power-enable pin: GPIO12 is its Grove port, so
nothing here drives it, whatever some examples do.

gpiozero chooses the transport: lgpio's hardware SPI on Bookworm (no spidev needed),
spidev under the RPi.GPIO or native factories. Tests pass MockFactory, whose SPI is
bit-banged on mock pins, and read the bytes back with a gpiozero MockSPIDevice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from firmware.state import DeviceState

_LOGGER = logging.getLogger(__name__)

Rgb = tuple[int, int, int]

MAX_BRIGHTNESS = 31  # the LED frame's 5-bit global current
DEFAULT_BRIGHTNESS = 8  # a quarter of full current: readable across a room, not glaring at night
RESPEAKER_2MIC_SPI_PORT = 0
RESPEAKER_2MIC_SPI_DEVICE = 1
RESPEAKER_2MIC_LEDS = 3
SPIN_STEP_SECONDS = 0.15  # thinking's spinner: one LED to the next

_LED_FRAME_START = 0xE0  # three 1 bits, then the 5 brightness bits


def frame_bytes(colours: Sequence[Rgb], brightness: int) -> bytes:
    """The bytes of one update: start frame, 0xE0|brightness B G R per LED, end frame."""
    if not 0 <= brightness <= MAX_BRIGHTNESS:
        raise ValueError(f"APA102 brightness is 0..{MAX_BRIGHTNESS}, not {brightness}")
    data = bytearray(4)  # start frame: 32 zero bits make the first LED take the next frame
    for red, green, blue in colours:
        data += bytes((_LED_FRAME_START | brightness, blue, green, red))  # bytes() rejects > 255
    # End frame, all zeros, which light nothing even if the chain is longer than we think
    # (0xFF bytes would be a full-brightness white frame): 32 bits latch the update on
    # SK9822 clones, which apply colours only at the next start frame, and one more bit
    # per two LEDs clocks the data through the chain, each LED delaying it half a clock.
    data += bytes(4 + -(-len(colours) // 16))
    return bytes(data)


class APA102:
    """A chain of APA102 LEDs on one SPI port; each update is one SPI write."""

    def __init__(
        self,
        count: int,
        *,
        port: int = RESPEAKER_2MIC_SPI_PORT,
        device: int = RESPEAKER_2MIC_SPI_DEVICE,
        pin_factory: Any | None = None,
    ) -> None:
        from gpiozero import Device

        if pin_factory is None:
            Device.ensure_pin_factory()  # what gpiozero's own SPIDevice does
            pin_factory = Device.pin_factory
        self.count = count
        self._spi = pin_factory.spi(port=port, device=device)
        self._lock = threading.Lock()  # an animation thread and the caller both write

    def show(self, colours: Sequence[Rgb], brightness: int) -> None:
        """Send one colour per LED."""
        if len(colours) != self.count:
            raise ValueError(f"{len(colours)} colours for {self.count} LEDs")
        data = frame_bytes(colours, brightness)
        with self._lock:
            self._spi.write(list(data))  # a list suits lgpio, spidev and software SPI alike

    def off(self) -> None:
        """Turn every LED off (they keep their last colour while powered, even after we exit)."""
        self.show([(0, 0, 0)] * self.count, 0)

    def close(self) -> None:
        """Release the SPI port."""
        with self._lock:
            self._spi.close()


# The HAT shows one condition at a time, the most important first.
PRIORITY = ("muted", "error", "speaking", "thinking", "listening", "offline")

_OFF: Rgb = (0, 0, 0)
_RED: Rgb = (255, 0, 0)
_ORANGE: Rgb = (255, 64, 0)
_GREEN: Rgb = (0, 255, 0)
_CYAN: Rgb = (0, 255, 255)
_BLUE: Rgb = (0, 0, 255)
_WHITE: Rgb = (255, 255, 255)

# Each condition's frames, one colour per LED (left to right); more than one frame animates.
# Muted is red as on other speakers, so people read it as "microphone off" at a glance;
# offline lights only the middle LED: the speaker still works locally, it is a hint.
FRAMES: dict[str | None, tuple[tuple[Rgb, ...], ...]] = {
    "error": ((_ORANGE,) * 3,),
    "muted": ((_RED,) * 3,),
    "speaking": ((_GREEN,) * 3,),
    "thinking": ((_CYAN, _OFF, _OFF), (_OFF, _CYAN, _OFF), (_OFF, _OFF, _CYAN)),
    "listening": ((_BLUE,) * 3,),
    "offline": ((_OFF, _WHITE, _OFF),),
    None: ((_OFF,) * 3,),
}


def most_important(state: DeviceState, *, offline: bool, error: bool, speaking: bool) -> str | None:
    """The one condition to show (muted first: a privacy speaker never hides that its microphone
    is off): muted > error > speaking > thinking > listening > offline."""
    true = {
        "error": error,
        "muted": state is DeviceState.MUTED,
        "speaking": speaking,
        "thinking": state is DeviceState.FINISHING,
        "listening": state is DeviceState.LISTENING,
        "offline": offline,
    }
    return next((name for name in PRIORITY if true[name]), None)


class HatLights:
    """The ReSpeaker 2-Mic HAT's three LEDs, showing the most important condition.

    A daemon thread steps the thinking spinner; it sleeps on a condition variable while
    nothing animates, so a steady light costs no CPU.
    """

    def __init__(self, brightness: int = DEFAULT_BRIGHTNESS, pin_factory: Any | None = None) -> None:
        if not 0 <= brightness <= MAX_BRIGHTNESS:
            raise ValueError(f"APA102 brightness is 0..{MAX_BRIGHTNESS}, not {brightness}")
        self._brightness = brightness
        self._leds = APA102(RESPEAKER_2MIC_LEDS, pin_factory=pin_factory)
        self._changed = threading.Condition()
        self._shown: str | None = None
        self._step = 0
        self._closing = False
        self._leds.off()  # whatever a previous run left lit (the LEDs hold it) is stale
        self._thread = threading.Thread(target=self._animate, name="earmark-hat-lights", daemon=True)
        self._thread.start()

    def show(self, state: DeviceState, *, offline: bool = False, error: bool = False, speaking: bool = False) -> None:
        """Show the most important of what is true now."""
        shown = most_important(state, offline=offline, error=error, speaking=speaking)
        with self._changed:
            if self._closing or shown == self._shown:
                return  # unchanged: the spinner keeps its place
            _LOGGER.debug("HAT lights: %s -> %s", self._shown, shown)
            self._shown, self._step = shown, 0
            self._leds.show(FRAMES[shown][0], self._brightness)
            self._changed.notify()

    def lit(self) -> dict[str, bool]:
        """Which condition is shown (at most one is True)."""
        with self._changed:
            return {name: name == self._shown for name in PRIORITY}

    def close(self) -> None:
        """Stop the animation, turn the LEDs off and release the SPI port."""
        with self._changed:
            if self._closing:
                return
            self._closing = True
            self._changed.notify()
        self._thread.join(timeout=5.0)  # it wakes at once; bounded all the same
        if self._thread.is_alive():
            _LOGGER.warning("HAT lights thread did not stop")
        self._leds.off()
        self._leds.close()

    def _animate(self) -> None:
        try:
            with self._changed:
                while not self._closing:
                    shown = self._shown
                    frames = FRAMES[shown]
                    if len(frames) < 2:
                        self._changed.wait()  # until show() or close()
                        continue
                    notified = self._changed.wait(SPIN_STEP_SECONDS)
                    # Compared as well as notified: a notify racing the timeout can read as a timeout.
                    if notified or self._closing or self._shown != shown:
                        continue
                    self._step = (self._step + 1) % len(frames)
                    self._leds.show(frames[self._step], self._brightness)
        except Exception:
            _LOGGER.exception("HAT lights stopped animating")
