"""`earmark-speaker`: the service that runs on the Pi (systemd, GPIO, watchdog, uplink).

It composes the device firmware (audio source, front end, uplink) with the hardware
around it: status LEDs, the mute button, and systemd's watchdog.
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
from contract.cli import OneLineParser, entry, prog_name
from contract.errors import EarmarkError
from firmware.events import FrontEndEvent, StateChanged
from firmware.mute import MuteState, gated
from firmware.satellite.settings import DeviceMode
from firmware.settings import DeviceSettings
from firmware.state import DeviceState
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
    from firmware.assistant.wiring import start_cloud_session
    from firmware.audio.source import open_source
    from firmware.frontend import FrontEnd
    from firmware.wake import WakeWordDetector

    state_dir = settings.state_dir.expanduser()
    mute = MuteState(state_dir / "mute.json")
    source = open_source(settings.input, settings.device)
    detector = WakeWordDetector(settings.wake)
    frontend = FrontEnd(settings.frontend, detector)
    session = link = None
    if settings.mode is DeviceMode.HOME_ASSISTANT:
        # Home Assistant's satellite: nothing is sent to the Earmark cloud, whatever else is configured.
        from firmware.satellite.runner import start_link

        link = start_link(settings.satellite, settings.state_dir, frontend, detector.wake_words)
    elif settings.identity is not None:
        # What comes back holds what the household said: logged at DEBUG only.
        session = start_cloud_session(settings, frontend, lambda line: _LOGGER.debug("%s", line))
    lights = button = None
    if settings.gpio.enabled:
        from hardware.gpio import MuteButton, make_lights

        lights = make_lights(settings.gpio, pin_factory)
        if settings.gpio.mute_button is not None:
            button = MuteButton(settings.gpio.mute_button, mute, pin_factory)

    def offline() -> bool:
        if link is not None:
            return not link.ready.is_set()
        return session is not None and not session.uplink.connected.is_set()

    def speaking() -> bool:
        return session is not None and session.assistant is not None and session.assistant.speaking

    def show(_event: FrontEndEvent | None = None) -> None:
        if lights is not None and (_event is None or isinstance(_event, StateChanged)):
            lights.show(frontend.state, offline=offline(), speaking=speaking())

    if mute.muted:
        frontend.mute()  # a muted speaker stays muted across restarts
    frontend.subscribe(show)
    show()
    shown_offline = offline()
    shown_speaking = False

    def between_frames() -> None:
        """On the audio thread, after each frame. The front end is not thread-safe: the mute
        button (gpiozero's thread) and the uplink or link only change state that is applied
        and shown from here."""
        nonlocal shown_offline, shown_speaking
        if session is not None:
            session.between_frames(frontend)
        if mute.muted and frontend.state is not DeviceState.MUTED:
            frontend.mute()
        elif not mute.muted and frontend.state is DeviceState.MUTED:
            frontend.unmute()
        if offline() != shown_offline or speaking() != shown_speaking:
            shown_offline, shown_speaking = offline(), speaking()
            show()
        notifier.ping()

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
        if link is not None:
            from firmware.satellite.runner import feed, is_file

            feed(
                gated(source.frames(), mute, source),
                frontend,
                link,
                keep_going=lambda: not stopping,
                on_frame=between_frames,
                realtime=is_file(settings.input),
            )
        else:
            for frame in gated(source.frames(), mute, source):
                if stopping:
                    break
                if frame:
                    frontend.process(frame)
                between_frames()
            frontend.end_of_input()
    finally:
        notifier.stopping()
        if session is not None:
            session.stop()
        if link is not None:
            link.stop()
        for part in (button, lights):
            if part is not None:
                part.close()
        source.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `earmark-speaker`."""
    return entry("earmark-speaker", _main, argv)


def _main(argv: list[str]) -> int:
    parser = OneLineParser(prog=prog_name("earmark-speaker"), description=__doc__.split("\n")[0])
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
