"""Both ends of a Home Assistant satellite connection, for the tests and the benchmark.

The speaker is the real service (`scripts/satellite_driver.py` runs `earmark-speaker`'s loop
with gpiozero's mock pins) in its own process, with a file-backed ALSA speaker; Home
Assistant's end is the real `wyoming` library's client and event classes, as Home
Assistant's `wyoming` integration uses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from wyoming.client import AsyncTcpClient
from wyoming.event import Event, Eventable
from wyoming.ping import Ping, Pong

from contract.audio import FRAME_BYTES, FRAME_SECONDS
from scripts.speech import Pcm

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nothing listens on now (the speaker binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


ASOUNDRC = """\
pcm.nullsink {{ type null }}
pcm.fileout {{ type file  slave.pcm "nullsink"  file "{out}"  format "raw"  truncate false }}
pcm.filespeaker {{ type plug  slave {{ pcm "fileout" format S16_LE rate 16000 channels 1 }}
                  hint {{ show on description "file-backed test speaker" }} }}
"""
# alsa-lib's file plugin, told not to truncate, writes each stream it is opened for to its
# own file: out.raw, out.raw.0001, ... One file per sound or reply the speaker played.

BUTTON = 17


class SpeakerProcess:
    """`earmark-speaker` (Home Assistant mode unless told), fed a WAV file paced like a
    microphone, or stdin."""

    def __init__(
        self,
        tmp_path: Path,
        wav: Path | None,
        *,
        extra_toml: str = "",
        timer_rings: int = 3,
        mode: str = "home_assistant",
        zeroconf: bool = False,
    ) -> None:
        """With `wav` None the microphone is stdin: `MicrophoneFeed` plays into it."""
        self.port = free_port()
        home = tmp_path / "home"
        home.mkdir()
        self.out_dir = tmp_path / "played"
        self.out_dir.mkdir()
        (home / ".asoundrc").write_text(ASOUNDRC.format(out=self.out_dir / "out.raw"))
        config = tmp_path / "device.toml"
        config.write_text(
            f'mode = "{mode}"\ninput = "{wav or "-"}"\nstate_dir = "{tmp_path / "state"}"\n'
            f"{extra_toml}\n"
            f"[satellite]\nport = {self.port}\nzeroconf = {str(zeroconf).lower()}\n"
            'name = "Kitchen speaker"\narea = "Kitchen"\n'
            f'[output]\nsound_device = "filespeaker"\nvolume = 0.8\ntimer_rings = {timer_rings}\n'
            f"[gpio]\nenabled = true\nmute_button = {BUTTON}\n"
        )
        self.log: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "scripts.satellite_driver", str(config)],
            cwd=REPO,
            stdin=subprocess.PIPE if wav is None else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "HOME": str(home), "PYTHONPATH": str(REPO)},
        )
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        for line in self.process.stderr or ():
            self.log.append(line.decode(errors="replace").rstrip())

    def logged(self, text: str) -> bool:
        """True once a log line containing `text` has been written."""
        return any(text in line for line in self.log)

    def press_mute(self) -> None:
        """Press the mute button, as a finger would."""
        self.process.send_signal(signal.SIGUSR1)

    def played(self) -> list[Pcm]:
        """Every stream the speaker played, in order, as 16 kHz int16."""
        files = sorted(self.out_dir.iterdir(), key=lambda p: (p.name != "out.raw", p.name))
        return [np.fromfile(path, dtype="<i2") for path in files]

    def stop(self) -> int:
        """SIGTERM, as systemd stops it; returns the exit status."""
        # SIGTERM first, then the end of the input that wakes a loop blocked on it. The other
        # way round, the speaker may see the end, stop on its own and be past its handlers
        # (interpreter shutdown) when the signal lands: killed by it, not stopped by it.
        if self.process.poll() is None:
            self.process.terminate()
        if self.process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()
        try:
            return self.process.wait(timeout=30)
        finally:
            self._reader.join(timeout=5)
            if self.process.stderr is not None:
                self.process.stderr.close()


class MicrophoneFeed:
    """A room in real time: 80 ms of silence at a time into the speaker's stdin, and what
    `say` queues in its place. Paced against the clock, so it never runs ahead."""

    def __init__(self, speaker: SpeakerProcess) -> None:
        if speaker.process.stdin is None:
            raise ValueError("the speaker reads a WAV file, not stdin")
        self._pipe = speaker.process.stdin
        self._queue: queue.Queue[bytes] = queue.Queue()
        self._stopped = threading.Event()
        self.said_frames: list[int] = []  # index of the first frame of each `say`
        self.frame_written_at: list[float] = []  # monotonic time each frame went into the pipe
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def say(self, pcm: Pcm) -> None:
        """Queue speech; it starts at the next frame boundary."""
        data = pcm.astype("<i2").tobytes()
        data += bytes(-len(data) % FRAME_BYTES)
        self._queue.put(data)

    def _run(self) -> None:
        started = time.monotonic()
        sent = 0
        pending = b""
        while not self._stopped.is_set():
            if not pending:
                try:
                    pending = self._queue.get_nowait()
                    self.said_frames.append(sent)
                except queue.Empty:
                    pending = bytes(FRAME_BYTES)
            frame, pending = pending[:FRAME_BYTES], pending[FRAME_BYTES:]
            try:
                self._pipe.write(frame)
                self._pipe.flush()
            except (BrokenPipeError, ValueError):
                return
            self.frame_written_at.append(time.monotonic())
            sent += 1
            ahead = sent * FRAME_SECONDS - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)

    def written_at(self, audio_time_seconds: float) -> float:
        """When the frame that ends at this point of the speaker's audio clock was written."""
        return self.frame_written_at[max(0, round(audio_time_seconds / FRAME_SECONDS) - 1)]

    def stop(self) -> None:
        """Stop talking."""
        self._stopped.set()
        self._thread.join(timeout=5)


class _FromAddress(AsyncTcpClient):
    """A Wyoming client whose connections come from `source_host` (any 127.x.y.z reaches
    loopback on Linux): another machine of the LAN, as the speaker sees it."""

    def __init__(self, host: str, port: int, source_host: str) -> None:
        super().__init__(host, port)
        self.source_host = source_host

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(
            host=self.host, port=self.port, local_addr=(self.source_host, 0)
        )


class HomeAssistantSide:
    """Home Assistant's end: connects, answers pings, and reads what the satellite sends.
    With `source_host` it connects from that address (a stranger, or another Home Assistant)."""

    def __init__(self, port: int, source_host: str | None = None) -> None:
        self.port = port
        self.source_host = source_host
        self.client: AsyncTcpClient | None = None
        self.events: list[Event] = []

    async def connect(self, timeout_seconds: float = 90.0) -> None:
        """Connect once the speaker listens (it loads its models first)."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            client = (
                AsyncTcpClient("127.0.0.1", self.port)
                if self.source_host is None
                else _FromAddress("127.0.0.1", self.port, self.source_host)
            )
            try:
                await client.connect()
                self.client = client
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    def _connected(self) -> AsyncTcpClient:
        if self.client is None:
            raise ConnectionError("not connected to the satellite")
        return self.client

    async def send(self, *messages: Eventable) -> None:
        """Write events to the satellite."""
        for message in messages:
            await self._connected().write_event(message.event())

    async def next(self, timeout_seconds: float = 60.0) -> Event | None:
        """The next event (pings answered on the way), or None when the satellite hung up."""
        while True:
            event = await asyncio.wait_for(self._connected().read_event(), timeout_seconds)
            if event is not None and Ping.is_type(event.type):
                await self.send(Pong(text=Ping.from_event(event).text))
                continue
            if event is not None:
                self.events.append(event)
            return event

    async def until(self, event_type: str, timeout_seconds: float = 60.0) -> list[Event]:
        """Events up to and including the first of `event_type`."""
        seen: list[Event] = []
        deadline = time.monotonic() + timeout_seconds
        while True:
            event = await self.next(max(0.1, deadline - time.monotonic()))
            if event is None:
                raise ConnectionError(f"the satellite hung up before {event_type}")
            seen.append(event)
            if event.type == event_type:
                return seen

    async def quiet_for(self, seconds: float) -> list[Event]:
        """Everything that arrives within `seconds` (for checking that nothing does)."""
        seen: list[Event] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = await self.next(left)
            except TimeoutError:
                break
            if event is None:
                break
            seen.append(event)
        return seen

    async def close(self) -> None:
        """Hang up, as Home Assistant does when it restarts."""
        if self.client is not None:
            await self.client.disconnect()
            self.client = None


def types(events: list[Event]) -> list[str]:
    """Event types with the audio chunks folded: ["detection", "audio-chunk*", ...]."""
    out: list[str] = []
    for event in events:
        name = "audio-chunk*" if event.type == "audio-chunk" else event.type
        if not out or out[-1] != name or name != "audio-chunk*":
            out.append(name)
    return out


def audio_of(events: list[Event]) -> bytes:
    """The microphone audio the satellite streamed, in order."""
    return b"".join(e.payload or b"" for e in events if e.type == "audio-chunk")


def data(events: list[Event], event_type: str) -> dict[str, Any]:
    """The data of the first event of a type."""
    return next(e.data for e in events if e.type == event_type)
