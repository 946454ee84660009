"""The device, assembled from its settings in one place and run frame by frame.

`assemble` opens the audio input, builds the wake-word detector and the front end, and
starts what the mode adds: the uplink and the assistant (the Earmark cloud) or the
Wyoming server (Home Assistant). `Device.run` feeds the front end until the input ends or
the caller stops it. The CLI (`earmark device listen`, `earmark device satellite`) and
the speaker service (`earmark-speaker`) all start a device here; what differs between
them (which mode, where lines go, mute and status lights) is a parameter, and tests swap
the input, the loudspeaker and the lights through the same parameters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from contract.audio import FRAME_BYTES, FRAME_SECONDS
from firmware.audio.echo import EchoCanceller, EchoReference
from firmware.audio.noise import noise_cleaner
from firmware.audio.output import Player
from firmware.audio.output_settings import OutputSettings
from firmware.audio.source import AudioSource, open_source
from firmware.events import FrontEndEvent, StateChanged
from firmware.frontend import FrontEnd
from firmware.mute import MuteState, gated
from firmware.satellite.settings import DeviceMode
from firmware.settings import DeviceSettings
from firmware.state import DeviceState

if TYPE_CHECKING:
    from firmware.assistant.wiring import CloudSession
    from firmware.satellite.link import SatelliteLink

_LOGGER = logging.getLogger(__name__)

SourceFactory = Callable[[str, str | None], AudioSource]  # (settings.input, settings.device)
# (settings.output, what it plays goes to, for echo cancellation) -> None: no loudspeaker
PlayerFactory = Callable[[OutputSettings, EchoReference | None], Player | None]


class FrameCleaner(Protocol):
    """Something done to each microphone frame before the front end hears it."""

    def clean(self, frame: bytes) -> bytes:
        """The frame, cleaned (same length)."""
        ...

    def gap(self) -> None:
        """No audio came (a muted heartbeat): the next frame does not follow on from the last."""
        ...


class Lights(Protocol):
    """Status lights the device keeps up to date (the service's GPIO LEDs or HAT)."""

    def show(self, state: DeviceState, *, offline: bool = False, speaking: bool = False) -> None:
        """Show what is true now."""


def open_player(output: OutputSettings, reference: EchoReference | None = None) -> Player:
    """The loudspeaker the output settings name, at their volume, telling `reference` what it plays."""
    return Player(output.sound_device, output.volume, reference)


def _no_lines(_line: str) -> None:
    pass


def _is_file(input_spec: str) -> bool:
    """A file stands in for a microphone (tests, demos). A microphone and stdin come at their own pace."""
    return input_spec not in ("mic", "-")


class Device:
    """A device `assemble` built: `run` it, then `close` it."""

    def __init__(
        self,
        source: AudioSource,
        frontend: FrontEnd,
        *,
        file_input: bool,
        session: CloudSession | None = None,
        link: SatelliteLink | None = None,
        mute: MuteState | None = None,
        lights: Lights | None = None,
        cleaners: tuple[FrameCleaner, ...] = (),
    ) -> None:
        self.source = source
        # In order: the echo canceller (it needs the raw microphone), then noise and gain.
        self.cleaners = cleaners
        self.frontend = frontend
        self.session = session  # cloud mode
        self.link = link  # Home Assistant mode
        self._file_input = file_input
        self._mute = mute
        self._lights = lights
        if mute is not None and mute.muted:
            frontend.mute()  # a muted speaker stays muted across restarts
        if lights is not None:
            frontend.subscribe(self._state_changed)
            self._show()
        self._shown = (self.offline(), self.speaking())

    def offline(self) -> bool:
        """Whether the mode's other end is missing: no broker, or no Home Assistant running us."""
        if self.link is not None:
            return not self.link.ready.is_set()
        return self.session is not None and not self.session.uplink.connected.is_set()

    def speaking(self) -> bool:
        """Whether the assistant is saying a reply."""
        return self.session is not None and self.session.assistant is not None and self.session.assistant.speaking

    def run(
        self,
        *,
        keep_going: Callable[[], bool] = lambda: True,
        on_frame: Callable[[], None] = lambda: None,
        pace: bool = False,
        max_seconds: float | None = None,
    ) -> None:
        """Feed the input through the front end until it ends, `keep_going` turns False, or
        `max_seconds` of audio have been heard; `on_frame` runs on this thread after each frame.

        `pace` plays a file at 80 ms a frame, like a microphone. In Home Assistant mode a
        file is always paced and, once it ends, the room goes quiet rather than the speaker
        going away: Home Assistant may still be answering.
        """
        standing_in = self.link is not None and self._file_input
        pace = pace or standing_in
        frames = self.source.frames()
        if self._mute is not None:
            frames = gated(frames, self._mute, self.source)
        started = time.monotonic()
        fed = 0  # counted here: a muted front end does not advance its own clock

        def step(frame: bytes) -> None:
            nonlocal fed
            fed += 1
            if frame:
                for cleaner in self.cleaners:
                    frame = cleaner.clean(frame)
                self.frontend.process(frame)
            else:
                for cleaner in self.cleaners:
                    cleaner.gap()
            self._between_frames()
            on_frame()
            if pace:
                ahead = fed * FRAME_SECONDS - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)

        for frame in frames:
            if not keep_going():
                if self.link is not None:
                    return  # the link closes next: Home Assistant hears the request end with it
                break
            step(frame)
            if max_seconds is not None and self.frontend.audio_time_seconds >= max_seconds:
                break
        else:
            if standing_in:
                _LOGGER.info("input ended: listening to silence until stopped")
                while keep_going():
                    step(bytes(FRAME_BYTES))
                return
        self.frontend.end_of_input()

    def close(self) -> None:
        """Stop the mode's part (the assistant first: it may still speak), then the input.
        Lights stay the caller's: it made them."""
        try:
            if self.session is not None:
                self.session.stop()
            if self.link is not None:
                self.link.stop()
        finally:
            self.source.close()

    def _between_frames(self) -> None:
        """On the audio thread, after each frame. The front end is not thread-safe: what the
        cloud or Home Assistant cancelled and the mute button (gpiozero's thread) only change
        state that is applied and shown from here."""
        if self.session is not None:
            self.session.between_frames(self.frontend)
        if self.link is not None and (cancel := self.link.cancelled_utterance()) is not None:
            self.frontend.cancel(cancel)
        if self._mute is not None:
            if self._mute.muted and self.frontend.state is not DeviceState.MUTED:
                self.frontend.mute()
            elif not self._mute.muted and self.frontend.state is DeviceState.MUTED:
                self.frontend.unmute()
        if self._lights is not None and (self.offline(), self.speaking()) != self._shown:
            self._shown = (self.offline(), self.speaking())
            self._show()

    def _state_changed(self, event: FrontEndEvent) -> None:
        if isinstance(event, StateChanged):
            self._show()

    def _show(self) -> None:
        if self._lights is not None:
            self._lights.show(self.frontend.state, offline=self.offline(), speaking=self.speaking())


def cleaners(reference: EchoReference | None, settings: DeviceSettings) -> tuple[FrameCleaner, ...]:
    """What is done to the microphone: the echo of what a loudspeaker plays taken out,
    then noise suppression and gain if the settings ask."""
    chosen: list[FrameCleaner] = []
    if reference is not None:
        chosen.append(EchoCanceller(reference))
    if (noise := noise_cleaner(settings.microphone)) is not None:
        chosen.append(noise)
    return tuple(chosen)


def assemble(
    settings: DeviceSettings,
    mode: DeviceMode | None,
    *,
    on_line: Callable[[str], None] = _no_lines,
    reply_dir: Path | None = None,
    mute: MuteState | None = None,
    lights: Lights | None = None,
    source_factory: SourceFactory = open_source,
    player_factory: PlayerFactory = open_player,
) -> Device:
    """Build and start a device from its settings.

    `mode` None is the front end alone (events only); CLOUD starts the uplink and the
    assistant, whose transcripts, intents and answers go to `on_line` as JSON lines (they
    hold what the household said) and whose replies go to `reply_dir` as WAV when given;
    HOME_ASSISTANT starts the Wyoming server. With `mute` the input is gated by the mute
    state; `lights` are kept showing the device's state.
    """
    from firmware.wake import WakeWordDetector

    source = source_factory(settings.input, settings.device)
    session: CloudSession | None = None
    link: SatelliteLink | None = None
    # A file never hears the loudspeaker: only a live input gets its echo taken out.
    reference = EchoReference() if settings.output.echo_cancellation and not _is_file(settings.input) else None
    speakers: list[Player] = []

    def open_speaker(output: OutputSettings) -> Player | None:
        player = player_factory(output, reference)
        if player is not None and player.available:
            speakers.append(player)
        return player

    try:
        detector = WakeWordDetector(settings.wake)
        _LOGGER.info("wake words: %s", detector.describe())
        frontend = FrontEnd(settings.frontend, detector)
        if mode is DeviceMode.HOME_ASSISTANT:
            # Nothing is sent to the Earmark cloud in this mode, whatever else is configured.
            from firmware.satellite.control import Control
            from firmware.satellite.link import SatelliteLink

            control = Control.open(settings.state_dir, settings.satellite.allowed_peers)
            player = open_speaker(settings.output)
            server = SatelliteLink(settings.satellite, detector.wake_words, player, control, output=settings.output)
            server.start()  # closes what it opened if it cannot listen
            link = server
            frontend.subscribe(link.handle)
        elif mode is DeviceMode.CLOUD:
            from firmware.assistant.wiring import start_cloud_session

            session = start_cloud_session(settings, frontend, on_line, reply_dir=reply_dir, open_player=open_speaker)
        return Device(
            source,
            frontend,
            file_input=_is_file(settings.input),
            session=session,
            link=link,
            mute=mute,
            lights=lights,
            cleaners=cleaners(reference if speakers else None, settings),
        )
    except BaseException:
        if session is not None:
            session.stop()
        if link is not None:
            link.stop()
        source.close()
        raise
