"""`earmark-speaker`: the service that runs on the Pi (systemd, GPIO, watchdog, uplink).

It runs the device as `firmware/device.py` assembles it, with the hardware around it:
status LEDs, the mute button, and systemd's watchdog.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import ConfigDict, Field

from contract import config
from contract.cli import OneLineParser, entry
from contract.errors import EarmarkError
from firmware.mute import MuteState
from firmware.satellite.settings import DeviceMode
from firmware.settings import DeviceSettings
from firmware.watchdog import Notifier
from hardware.gpio import GpioSettings

_LOGGER = logging.getLogger(__name__)


class SpeakerSettings(DeviceSettings):
    """Device settings plus the hardware around it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    env_prefix: ClassVar[str] = "EARMARK_"

    gpio: GpioSettings = Field(default_factory=GpioSettings)


def run(settings: SpeakerSettings, notifier: Notifier, pin_factory: Any | None = None) -> int:
    """The service loop; returns when the input ends or on SIGTERM."""
    from firmware.device import assemble

    mute = MuteState(settings.state_dir.expanduser() / "mute.json")
    # Without an identity a speaker in cloud mode has nothing to stream as: it only listens.
    mode = settings.mode if settings.mode is DeviceMode.HOME_ASSISTANT or settings.identity is not None else None
    lights = button = None
    try:
        if settings.gpio.enabled:
            from hardware.gpio import MuteButton, make_lights

            lights = make_lights(settings.gpio, pin_factory)
            if settings.gpio.mute_button is not None:
                button = MuteButton(settings.gpio.mute_button, mute, pin_factory)
        # What comes back in cloud mode holds what the household said: logged at DEBUG only.
        device = assemble(settings, mode, on_line=lambda line: _LOGGER.debug("%s", line), mute=mute, lights=lights)
        stopping = False

        def stop(*_args: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        notifier.ready()
        notifier.status(
            "muted" if mute.muted else f"listening for the wake word ({settings.mode.value.replace('_', ' ')} mode)"
        )
        try:
            device.run(keep_going=lambda: not stopping, on_frame=notifier.ping)
        finally:
            notifier.stopping()
            device.close()
    finally:
        for part in (button, lights):
            if part is not None:
                part.close()
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "earmark-speaker") -> int:
    """Entry point of `earmark-speaker` (`prog`: the name it reports under)."""
    return entry(prog, lambda args: _main(args, prog), argv)


def _main(argv: list[str], prog: str) -> int:
    parser = OneLineParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, help="TOML settings (e.g. /etc/earmark/device.toml)")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = config.load_settings(SpeakerSettings, args.config)
        return run(settings, Notifier())
    except EarmarkError as err:
        print(json.dumps({"type": "error", "code": err.code, "message": str(err)}), file=sys.stderr)  # noqa: T201
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
