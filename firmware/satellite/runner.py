"""Running the front end as a Home Assistant satellite (the service and the CLI share this)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TextIO

from contract.audio import FRAME_BYTES, FRAME_SECONDS
from firmware.audio.output import Player
from firmware.events import FrontEndEvent, UtteranceAudio
from firmware.frontend import FrontEnd
from firmware.satellite.control import Control
from firmware.satellite.link import SatelliteLink
from firmware.satellite.settings import SatelliteSettings
from firmware.settings import DeviceSettings

_LOGGER = logging.getLogger(__name__)


def is_file(input_spec: str) -> bool:
    """A file stands in for a microphone (tests, demos): it is paced, then a quiet room
    follows, because Home Assistant may still be answering when it ends. A microphone and
    stdin come at their own pace."""
    return input_spec not in ("mic", "-")


def start_link(
    settings: SatelliteSettings, state_dir: Path, frontend: FrontEnd, wake_words: Sequence[str]
) -> SatelliteLink:
    """Open the speaker output, start the Wyoming server and subscribe it to the front end.
    The pinned Home Assistant and the pause are kept in `state_dir`."""
    player = Player(settings.sound_device, settings.volume)
    link = SatelliteLink(settings, wake_words, player, Control.open(state_dir, settings.allowed_peers))
    link.start()
    frontend.subscribe(link.handle)
    return link


def feed(
    frames: Iterable[bytes],
    frontend: FrontEnd,
    link: SatelliteLink,
    *,
    keep_going: Callable[[], bool],
    on_frame: Callable[[], None] = lambda: None,
    realtime: bool = False,
) -> None:
    """Run frames through the front end, cancelling what Home Assistant cannot take.

    With `realtime` (a file standing in for a microphone) frames are paced at 80 ms and,
    once the file ends, the room goes quiet rather than the speaker going away: Home
    Assistant may still be answering.
    """
    started = time.monotonic()
    fed = 0  # counted here: a muted front end does not advance its own clock

    def pace() -> None:
        ahead = fed * FRAME_SECONDS - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)

    def one(frame: bytes) -> None:
        nonlocal fed
        fed += 1
        if frame:
            frontend.process(frame)
        cancel = link.cancelled_utterance()
        if cancel is not None:
            frontend.cancel(cancel)
        on_frame()
        if realtime:
            pace()

    for frame in frames:
        if not keep_going():
            return
        one(frame)
    if realtime:
        _LOGGER.info("input ended: listening to silence until stopped")
        silence = bytes(FRAME_BYTES)
        while keep_going():
            one(silence)
    else:
        frontend.end_of_input()


def serve(settings: DeviceSettings, out: TextIO, stop: threading.Event) -> int:
    """`earmark-device satellite`: serve Home Assistant until `stop`, one JSON line per event."""
    from firmware.audio.source import open_source
    from firmware.wake import WakeWordDetector

    source = open_source(settings.input, settings.device)
    try:
        detector = WakeWordDetector(settings.wake)
        frontend = FrontEnd(settings.frontend, detector)
        lock = threading.Lock()

        def line(record: dict[str, object]) -> None:
            with lock:
                out.write(json.dumps(record) + "\n")
                out.flush()

        def on_event(event: FrontEndEvent) -> None:
            if not isinstance(event, UtteranceAudio):
                line(event.summary())

        frontend.subscribe(on_event)
        link = start_link(settings.satellite, settings.state_dir, frontend, detector.wake_words)
        try:
            line({"type": "satellite_listening", "name": link.name, "port": link.port})
            feed(
                source.frames(), frontend, link, keep_going=lambda: not stop.is_set(), realtime=is_file(settings.input)
            )
        finally:
            link.stop()
        return 0
    finally:
        source.close()
