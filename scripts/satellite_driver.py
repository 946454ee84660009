"""Runs `earmark-speaker`'s service loop with gpiozero's mock pins, for the satellite tests.

The service is the real one (settings from a TOML file, microphone, file or stdin input,
the Wyoming server, ALSA output); only the GPIO pins are gpiozero's own test seam.
SIGUSR1 presses the mute button, as a finger would.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from contract import config
from firmware.watchdog import Notifier
from hardware.speaker import SpeakerSettings, run


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = config.load_settings(SpeakerSettings, Path(sys.argv[1]))
    factory = MockFactory()
    button = settings.gpio.mute_button
    if button is None:
        raise SystemExit("the driver presses the mute button: set gpio.mute_button")

    def press(*_args: object) -> None:
        pin = factory.pin(button)
        pin.drive_low()
        time.sleep(0.05)
        pin.drive_high()

    signal.signal(signal.SIGUSR1, press)
    return run(settings, Notifier({}), pin_factory=factory)


if __name__ == "__main__":
    raise SystemExit(main())
