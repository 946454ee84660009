"""Status LEDs and the mute button, through gpiozero.

On a Pi gpiozero drives real pins (lgpio on Bookworm); tests pass gpiozero's own
MockFactory, the library's test seam, so the same code runs without hardware.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from firmware.mute import MuteState
from firmware.state import DeviceState

_LOGGER = logging.getLogger(__name__)


class GpioSettings(BaseModel):
    """BCM pin numbers; None leaves a light out. Defaults suit a breadboard beside a
    ReSpeaker 2-Mic HAT (whose own LEDs are on SPI, and whose button is GPIO 17)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    listening_led: int | None = Field(5, ge=0, le=27)
    thinking_led: int | None = Field(6, ge=0, le=27)
    muted_led: int | None = Field(13, ge=0, le=27)
    error_led: int | None = Field(19, ge=0, le=27)
    offline_led: int | None = Field(26, ge=0, le=27)
    mute_button: int | None = Field(17, ge=0, le=27)


class StatusLights:
    """One LED per condition: listening, thinking (blinks), muted, error, offline."""

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

    def show(self, state: DeviceState, *, offline: bool = False, error: bool = False) -> None:
        """Light what is true now."""
        wanted = {
            "listening": state is DeviceState.LISTENING,
            "thinking": state is DeviceState.FINISHING,
            "muted": state is DeviceState.MUTED,
            "error": error,
            "offline": offline,
        }
        for name, on in wanted.items():
            led = self._leds[name]
            if led is None:
                continue
            if on and name == "thinking":
                led.blink(on_time=0.2, off_time=0.2)
            elif on:
                led.on()
            else:
                led.off()

    def lit(self) -> dict[str, bool]:
        """Which LEDs are on (blinking counts as on)."""
        return {name: bool(led.is_lit) for name, led in self._leds.items() if led is not None}

    def close(self) -> None:
        """Release the pins."""
        for led in self._leds.values():
            if led is not None:
                led.close()


class MuteButton:
    """A press toggles the persisted mute state."""

    def __init__(self, pin: int, mute: MuteState, pin_factory: Any | None = None) -> None:
        from gpiozero import Button

        self._button = Button(pin, pin_factory=pin_factory, bounce_time=None if pin_factory else 0.05)
        self._button.when_pressed = lambda: mute.toggle()

    def close(self) -> None:
        """Release the pin."""
        self._button.close()
