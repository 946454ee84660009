"""The satellite: Home Assistant connects here and runs its Assist pipeline on our requests.

Earmark keeps its own front end: the wake word and the end of speech are decided on the
speaker, so Home Assistant receives a request that is already cut (pre-roll, then the
words, then `voice-stopped` and `audio-stop` the moment Earmark's segmenter ends it)
instead of waiting on its own VAD. Nothing is sent before the wake word, nothing while
muted, and nothing ever goes to the Earmark cloud in this mode.

Threads: the front end calls `handle` on the audio thread; everything that touches the
connection runs on this link's own asyncio loop, reached with `call_soon_threadsafe`.
The audio thread learns of a request Home Assistant cannot take through
`cancelled_utterance`, and cancels it itself (the front end is not thread-safe).

Strangers on the LAN can connect too (Wyoming has no authentication). Only the pinned
Home Assistant may run the speaker (`control.py`); who may connect at all is
`peers.py`'s; a connection that does not run the speaker is hung up on when idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Sequence
from uuid import UUID

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, Eventable
from wyoming.info import Describe
from wyoming.ping import Ping, Pong
from wyoming.pipeline import PipelineStage, RunPipeline
from wyoming.satellite import PauseSatellite, RunSatellite
from wyoming.snd import Played
from wyoming.vad import VoiceStarted, VoiceStopped
from wyoming.wake import Detection

from contract.audio import CHANNELS, FRAME_BYTES, SAMPLE_RATE_HZ, SAMPLE_WIDTH_BYTES, seconds_to_bytes
from firmware.audio.output import Begin, Player
from firmware.audio.output_settings import OutputSettings
from firmware.errors import SatelliteError
from firmware.events import FrontEndEvent, SpeechEnded, SpeechStarted, StateChanged, UtteranceAudio, WakeDetected
from firmware.satellite.control import Control
from firmware.satellite.discovery import Advertiser, announceable
from firmware.satellite.info import describe
from firmware.satellite.notices import Notices
from firmware.satellite.peers import Peer, Peers
from firmware.satellite.settings import SatelliteSettings
from firmware.satellite.wire import MAX_HEADER_BYTES, PeerError, read_event
from firmware.segmenter import EndReason
from firmware.sounds import Sound, render
from firmware.state import DeviceState

_LOGGER = logging.getLogger(__name__)

_MAX_PING_TEXT = 256
_DEFAULT_OUTPUT = OutputSettings()


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


class SatelliteLink:
    """The Wyoming server; subscribe `handle` to the front end."""

    def __init__(
        self,
        settings: SatelliteSettings,
        wake_words: Sequence[str],
        player: Player | None,
        control: Control,
        *,
        output: OutputSettings = _DEFAULT_OUTPUT,
    ) -> None:
        self._settings = settings
        self._timer_rings = output.timer_rings
        self._control = control
        self._wake_words = list(wake_words)
        self._player = player if player is not None and player.available else None
        if player is not None and self._player is None:
            player.close()
        self._sounds = {sound: render(sound) for sound in Sound} if output.sounds else {}
        self.name = settings.name or socket.gethostname()
        self.port = settings.port
        self.ready = threading.Event()  # Home Assistant connected and running us (not paused)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="wyoming", daemon=True)
        self._server: asyncio.Server | None = None
        self._advertiser = Advertiser() if settings.zeroconf and announceable(settings.host) else None
        self._announcer: asyncio.Task[None] | None = None
        self._peer: Peer | None = None  # the connection that sent run-satellite last
        self._peers = Peers(control)
        # Whole 80 ms frames, so every chunk Home Assistant gets is one frame.
        self._preroll_bytes = -(-seconds_to_bytes(settings.preroll_seconds) // FRAME_BYTES) * FRAME_BYTES
        self._muted = False
        self._streaming: UUID | None = None
        self._cancel: UUID | None = None
        self._cancel_lock = threading.Lock()
        self._done_for: UUID | None = None  # the request whose done sound has played
        self._notices = Notices(self._play, output.timer_rings)

    # -- lifecycle (any thread) ------------------------------------------------------------

    def start(self) -> None:
        """Listen (and advertise); raises SatelliteError if the port cannot be had."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        try:
            future.result(timeout=30)
        except OSError as err:
            self.stop()
            raise SatelliteError(f"cannot listen on {self._settings.host}:{self._settings.port}: {err}") from err

    def stop(self) -> None:
        """Close every connection and withdraw the advertisement."""
        if self._loop.is_running():
            with contextlib.suppress(TimeoutError, RuntimeError):
                asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._loop.is_running() and not self._loop.is_closed():
            self._loop.close()
        if self._player is not None:
            self._player.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self._settings.host, self._settings.port, limit=MAX_HEADER_BYTES
        )
        self.port = self._server.sockets[0].getsockname()[1]
        _LOGGER.info("Wyoming satellite %r listening on %s:%d", self.name, self._settings.host, self.port)
        if self._control.paused:
            _LOGGER.info("paused, as Home Assistant left it: nothing is sent until it runs the speaker again")
        if self._settings.zeroconf and self._advertiser is None:
            _LOGGER.info("not announced over zeroconf: %s is not on the LAN", self._settings.host)
        if self._advertiser is not None:
            self._announcer = asyncio.get_running_loop().create_task(self._announce(self._advertiser))

    async def _announce(self, advertiser: Advertiser) -> None:
        """Announce once there is a LAN address: at boot the network may come up after us.
        Without an announcement Home Assistant can still be pointed at host and port."""
        delay = 2.0
        while not await advertiser.start(self.name, self._settings.host, self.port):
            if delay == 2.0:
                _LOGGER.warning("no LAN address to announce yet: retrying (or add the speaker by its address)")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)

    async def _stop(self) -> None:
        if self._announcer is not None:
            self._announcer.cancel()
        if self._advertiser is not None:
            await self._advertiser.stop()
        if self._server is not None:
            self._server.close()
        for peer in self._peers:
            peer.close()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()
        # Whatever still runs (connection handlers, senders) ends here, not with the loop:
        # a task the loop drops while pending is an error at exit.
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    # -- the audio thread ---------------------------------------------------------------

    def handle(self, event: FrontEndEvent) -> None:
        """Front-end subscriber (audio thread): hand the event to the loop."""
        self._loop.call_soon_threadsafe(self._from_device, event)

    def cancelled_utterance(self) -> UUID | None:
        """An utterance Home Assistant cannot take, for the audio thread to cancel (once)."""
        with self._cancel_lock:
            cancel, self._cancel = self._cancel, None
        return cancel

    # -- the loop: what the speaker heard -------------------------------------------------

    def _from_device(self, event: FrontEndEvent) -> None:
        if isinstance(event, WakeDetected):
            self._wake(event)
        elif isinstance(event, UtteranceAudio) and event.utterance_id == self._streaming:
            audio = event.audio
            if event.sequence == 0:
                # The pre-roll holds the wake word itself: Home Assistant's speech-to-text
                # gets only its tail, enough for a command that follows without a pause.
                audio = audio[max(0, len(audio) - self._preroll_bytes) :]
            for start in range(0, len(audio), FRAME_BYTES):
                self._send(
                    AudioChunk(
                        rate=SAMPLE_RATE_HZ,
                        width=SAMPLE_WIDTH_BYTES,
                        channels=CHANNELS,
                        audio=audio[start : start + FRAME_BYTES],
                        timestamp=_ms(event.audio_time_seconds),
                    )
                )
        elif isinstance(event, SpeechStarted) and event.utterance_id == self._streaming:
            self._send(VoiceStarted(timestamp=_ms(event.audio_time_seconds)))
        elif isinstance(event, SpeechEnded) and event.utterance_id == self._streaming:
            self._streaming = None
            if event.reason is not EndReason.MUTED:
                self._send(VoiceStopped(timestamp=_ms(event.audio_time_seconds)))
            # Ends Home Assistant's audio stream now: it does not wait on a VAD of its own.
            self._send(AudioStop(timestamp=_ms(event.audio_time_seconds)))
            if event.reason not in (EndReason.MUTED, EndReason.CANCELLED) and self._done_sounded(event.utterance_id):
                self._play(Sound.DONE)
        elif isinstance(event, StateChanged) and DeviceState.MUTED in (event.old, event.new):
            self._muted = event.new is DeviceState.MUTED
            _LOGGER.info("microphone %s: telling Home Assistant", "muted" if self._muted else "unmuted")
            self._send(self._info())

    def _wake(self, event: WakeDetected) -> None:
        if self._peer is None or self._control.paused:
            self._cancel_request(event.utterance_id)
            if self._peer is None:
                _LOGGER.warning("wake word heard, but no Home Assistant is connected")
                self._play(Sound.ERROR)
            else:
                _LOGGER.info("wake word heard while Home Assistant has the satellite paused")
            return
        if self._player is not None:
            self._player.stop()  # a new request cuts a reply or a ringing timer short
        self._streaming = event.utterance_id
        timestamp = _ms(event.audio_time_seconds)
        self._send(Detection(name=event.wake_word, timestamp=timestamp))
        self._send(
            RunPipeline(
                start_stage=PipelineStage.ASR,
                end_stage=PipelineStage.TTS if self._player is not None else PipelineStage.HANDLE,
                wake_word_name=event.wake_word,
            )
        )
        self._send(AudioStart(rate=SAMPLE_RATE_HZ, width=SAMPLE_WIDTH_BYTES, channels=CHANNELS, timestamp=timestamp))
        self._play(Sound.WAKE)

    def _done_sounded(self, utterance_id: UUID) -> bool:
        """True the first time it is asked for a request (its done sound is played once,
        by whichever comes first: our end of speech or Home Assistant's answer)."""
        with self._cancel_lock:
            if self._done_for == utterance_id:
                return False
            self._done_for = utterance_id
            return True

    def _cancel_request(self, utterance_id: UUID) -> None:
        with self._cancel_lock:
            self._cancel = utterance_id

    def _send(self, message: Eventable | Event) -> None:
        if self._peer is not None:
            self._peer.send(message if isinstance(message, Event) else message.event())

    def _play(self, sound: Sound, times: int = 1) -> None:
        if self._player is not None and sound in self._sounds:
            for _ in range(times):
                self._player.play(self._sounds[sound])

    def _info(self) -> Event:
        return describe(
            self.name, self._settings.area, self._wake_words, can_play=self._player is not None, muted=self._muted
        ).event()

    # -- the loop: what Home Assistant says -----------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer(writer)
        refusal = self._peers.admit(peer, self._peer)
        if refusal is not None:
            _LOGGER.warning("refused a connection from %s: %s", peer.address, refusal)
            peer.close()
            return
        self._peers.add(peer)
        _LOGGER.info("connection from %s", peer.address)
        try:
            while (event := await self._next_event(peer, reader)) is not None:
                try:
                    self._from_peer(peer, event)
                except (KeyError, TypeError, ValueError) as err:
                    _LOGGER.warning("ignored a malformed %r event from %s: %s", event.type, peer.address, err)
        except PeerError as err:
            _LOGGER.warning("closing the connection from %s: %s", peer.address, err)
        except ConnectionError:
            pass
        finally:
            peer.close()
            self._peers.remove(peer)
            if self._peer is peer:
                self._lost(peer)

    async def _next_event(self, peer: Peer, reader: asyncio.StreamReader) -> Event | None:
        """The peer's next event; None when it hung up or, unless it runs the speaker, went
        quiet for `idle_seconds` (four silent sockets must not keep Home Assistant out).
        The running Home Assistant is exempt: it may sit paused for days without a word."""
        idle = None if peer is self._peer else self._settings.idle_seconds
        try:
            async with asyncio.timeout(idle):
                return await read_event(reader)
        except TimeoutError:
            _LOGGER.info("closing the connection from %s: nothing sent in %.0f s", peer.address, idle)
            return None

    def _from_peer(self, peer: Peer, event: Event) -> None:
        if Ping.is_type(event.type):
            text = Ping.from_event(event).text
            peer.send(Pong(text=text[:_MAX_PING_TEXT] if isinstance(text, str) else None).event())
        elif Describe.is_type(event.type):
            peer.send(self._info())
        elif RunSatellite.is_type(event.type):
            if self._control.may_run(peer.host):
                self._adopt(peer)
            else:
                _LOGGER.warning("refused run-satellite from %s: the speaker is paired with another peer", peer.address)
                peer.send(Error(text="this speaker is paired with another Home Assistant", code="not-paired").event())
        elif peer is not self._peer:
            _LOGGER.debug("ignored %s from %s, which has not run the satellite", event.type, peer.address)
        elif PauseSatellite.is_type(event.type):
            self._pause()
        elif AudioStart.is_type(event.type):
            start = AudioStart.from_event(event)
            if self._player is not None:
                streaming = self._streaming
                if streaming is not None and self._done_sounded(streaming):
                    # Home Assistant's own VAD ended the request before ours did: the done
                    # sound goes before its answer, not after it.
                    self._play(Sound.DONE)
                self._player.begin(Begin(start.rate, start.width, start.channels))
        elif AudioChunk.is_type(event.type):
            if self._player is not None:
                self._player.write(AudioChunk.from_event(event).audio)
        elif AudioStop.is_type(event.type):
            self._reply_sent(peer)
        else:
            self._notices.handle(event)

    def _adopt(self, peer: Peer) -> None:
        if self._peer is not None and self._peer is not peer:
            # One Home Assistant drives a satellite; from the pinned address, the newest
            # connection is the live one (Home Assistant restarted).
            _LOGGER.info("Home Assistant reconnected from %s: closing %s", peer.address, self._peer.address)
            old, self._peer = self._peer, None
            old.close()
            self._abandon_request()
        if self._peer is not peer:
            self._notices.timers.clear()  # another Home Assistant (or a restarted one) keeps its own
        self._control.run(peer.host)
        self._peer = peer
        self.ready.set()
        _LOGGER.info("Home Assistant at %s runs the satellite", peer.address)

    def _pause(self) -> None:
        _LOGGER.info("Home Assistant paused the satellite")
        self._control.pause()
        self.ready.clear()
        self._abandon_request()

    def _lost(self, peer: Peer) -> None:
        _LOGGER.warning("Home Assistant at %s disconnected", peer.address)
        self._peer = None
        self._notices.timers.clear()
        self.ready.clear()
        if self._player is not None:
            self._player.stop()  # the rest of a reply from a peer that is gone
        if self._abandon_request():
            self._play(Sound.ERROR)

    def _abandon_request(self) -> bool:
        """Stop streaming the request in progress, if any; the audio thread cancels it."""
        if self._streaming is None:
            return False
        self._cancel_request(self._streaming)
        self._streaming = None
        return True

    def _reply_sent(self, peer: Peer) -> None:
        """The spoken reply is all here: say `played` once its last sample has been heard."""

        def played() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed while the reply played
                self._loop.call_soon_threadsafe(lambda: peer.send(Played().event()))

        if self._player is not None:
            self._player.end(on_played=played)
        else:
            peer.send(Played().event())
