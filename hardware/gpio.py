"""Status lights and the mute button, through gpiozero.

On a Pi gpiozero drives real pins (lgpio on Bookworm); tests pass gpiozero's own
MockFactory, the library's test seam, so the same code runs without hardware. The
lights are either one LED per condition on GPIO pins (`StatusLights`) or the ReSpeaker
2-Mic HAT's three RGB LEDs (`hardware.apa102.HatLights`); `make_lights` picks one.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from firmware.mute import MuteState
from firmware.state import DeviceState
from hardware.apa102 import DEFAULT_BRIGHTNESS, MAX_BRIGHTNESS, HatLights

_LOGGER = logging.getLogger(__name__)


class GpioSettings(BaseModel):
    """BCM pin numbers; None leaves a light out. Defaults suit a breadboard beside a
    ReSpeaker 2-Mic HAT (whose own LEDs are on SPI, and whose button is GPIO 17).

    `lights` chooses the status lights: "gpio" is the breadboard's LEDs on the pins below,
    "respeaker_2mic" the HAT's three APA102s on SPI0 (the *_led pins are then unused)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    lights: Literal["gpio", "respeaker_2mic"] = "gpio"
    # At least 1: at 0 the HAT could never show that the microphone is muted.
    hat_brightness: int = Field(DEFAULT_BRIGHTNESS, ge=1, le=MAX_BRIGHTNESS)
    listening_led: int | None = Field(5, ge=0, le=27)
    thinking_led: int | None = Field(6, ge=0, le=27)
    muted_led: int | None = Field(13, ge=0, le=27)
    error_led: int | None = Field(19, ge=0, le=27)
    offline_led: int | None = Field(26, ge=0, le=27)
    mute_button: int | None = Field(17, ge=0, le=27)


class Lights(Protocol):
    """What the speaker needs of its status lights."""

    def show(self, state: DeviceState, *, offline: bool = False, error: bool = False, speaking: bool = False) -> None:
        """Show what is true now."""

    def lit(self) -> dict[str, bool]:
        """Which conditions are shown, by name."""

    def close(self) -> None:
        """Turn the lights off and release the hardware."""


def make_lights(settings: GpioSettings, pin_factory: Any | None = None) -> Lights:
    """The status lights the settings choose."""
    if settings.lights == "respeaker_2mic":
        return HatLights(settings.hat_brightness, pin_factory=pin_factory)
    return StatusLights(settings, pin_factory)


class StatusLights:
    """One LED per condition: listening, thinking (blinks), muted, error, offline.

    There is no speaking LED: speaking blinks the listening LED fast. Speaking is the
    speaker's turn in the conversation that LED stands for, and a 5 Hz blink reads as
    neither steady listening nor the thinking LED's slower blink.
    """

    def __init__(self, settings: GpioSettings, pin_factory: Any | None = None) -> None:
        from gpiozero import LED

        def led(pin: int | None) -> Any:
            return LED(pin, pin_factory=pin_factory) if pin is not None else None

        self._leds = {
            "listening": led(settings.listening_led),
            "thinking": led(settings.thinking_led),
            "muted": led(settings.muted_led),
            "error": led(settings.error_led),
            "offline": led(settings.offline_led),
        }
        self._blinking: set[str] = set()

    def show(self, state: DeviceState, *, offline: bool = False, error: bool = False, speaking: bool = False) -> None:
        """Light what is true now."""
        wanted = {
            "listening": state is DeviceState.LISTENING or speaking,
            "thinking": state is DeviceState.FINISHING,
            "muted": state is DeviceState.MUTED,
            "error": error,
            "offline": offline,
        }
        blink_seconds = {"thinking": 0.2, "listening": 0.1 if speaking else None}
        self._blinking.clear()
        for name, on in wanted.items():
            led = self._leds[name]
            if led is None:
                continue
            seconds = blink_seconds.get(name)
            if on and seconds is not None:
                led.blink(on_time=seconds, off_time=seconds)
                self._blinking.add(name)
            elif on:
                led.on()
            else:
                led.off()

    def lit(self) -> dict[str, bool]:
        """Which LEDs are on (blinking counts as on, in either half of the blink)."""
        return {name: bool(led.is_lit) or name in self._blinking for name, led in self._leds.items() if led is not None}

    def close(self) -> None:
        """Release the pins."""
        for led in self._leds.values():
            if led is not None:
                led.close()


class MuteButton:
    """A press toggles the persisted mute state."""

    def __init__(self, pin: int, mute: MuteState, pin_factory: Any | None = None) -> None:
        # A button wired as gpiozero's `Button` is (to ground, pulled up), read as a plain
        # input: `Button` adds a hold thread that wakes ten times a second for hold events
        # a mute button never uses, measurable CPU on a Pi Zero that otherwise idles.
        from gpiozero import DigitalInputDevice

        bounce_time = None if pin_factory else 0.05
        self._button = DigitalInputDevice(pin, pull_up=True, bounce_time=bounce_time, pin_factory=pin_factory)
        self._button.when_activated = lambda: mute.toggle()

    def close(self) -> None:
        """Release the pin."""
        self._button.close()
