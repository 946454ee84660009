"""Who may drive the satellite: the pinned Home Assistant, and nobody else on the LAN.

The attacks of issue 24, rerun against the real Wyoming server in this process: a second
peer that says `run-satellite` after Home Assistant paused the speaker, silent sockets
that hold every slot, and a pause that a reconnect or a restart would forget. Strangers
connect from other loopback addresses (127.0.0.2…), which the speaker sees as other
machines. No audio hardware: the front end's events are handed to the link directly.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from wyoming.event import Event
from wyoming.info import Describe
from wyoming.satellite import PauseSatellite, RunSatellite

from contract.audio import FRAME_BYTES
from firmware.cli import main as device_main
from firmware.events import UtteranceAudio, WakeDetected
from firmware.satellite.control import Control
from firmware.satellite.link import SatelliteLink
from firmware.satellite.peers import MAX_PEERS, MAX_PEERS_PER_ADDRESS
from firmware.satellite.settings import SatelliteSettings
from scripts.satellite_rig import HomeAssistantSide
from tests.conftest import REPO, wait_until

HOME_ASSISTANT = "127.0.0.1"
STRANGER = "127.0.0.2"

LinkFactory = Callable[..., SatelliteLink]


@pytest.fixture
def make_link(tmp_path: Path) -> Iterator[LinkFactory]:
    """Links that keep their pin and pause in `tmp_path/state` (a second one is a restart)."""
    started: list[SatelliteLink] = []

    def make(**settings: object) -> SatelliteLink:
        values: dict[str, object] = {"port": 0, "host": "0.0.0.0", "zeroconf": False, "name": "Kitchen", **settings}  # noqa: S104
        link = SatelliteLink(
            SatelliteSettings.model_validate(values),
            ["alexa"],
            None,
            Control.open(tmp_path / "state", SatelliteSettings.model_validate(values).allowed_peers),
        )
        link.start()
        started.append(link)
        return link

    yield make
    for link in started:
        link.stop()


def request(link: SatelliteLink) -> uuid.UUID:
    """The household says 'Alexa, …': a wake, then a second of speech."""
    utterance = uuid.uuid4()
    link.handle(WakeDetected(audio_time_seconds=2.0, utterance_id=utterance, wake_word="alexa", score=0.99))
    for sequence in range(12):
        link.handle(
            UtteranceAudio(
                audio_time_seconds=2.0 + sequence * 0.08,
                utterance_id=utterance,
                sequence=sequence,
                audio=b"\x01" * FRAME_BYTES,
            )
        )
    return utterance


def hung_up(sock: socket.socket) -> bool:
    """Whether the speaker closed this connection (with our bytes unread: a reset)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


async def running(link: SatelliteLink, host: str = HOME_ASSISTANT) -> HomeAssistantSide:
    """Home Assistant at `host`, connected and running the speaker."""
    ha = HomeAssistantSide(link.port, host)
    await ha.connect()
    await ha.send(RunSatellite())
    assert await asyncio.to_thread(wait_until, link.ready.is_set, 30)
    return ha


def test_a_stranger_cannot_undo_the_pause_or_hear_the_next_request(make_link: LinkFactory) -> None:
    link = make_link()

    async def attack() -> dict[str, list[Event]]:
        ha = await running(link)
        await ha.send(PauseSatellite())  # the household muted the speaker in Home Assistant
        assert await asyncio.to_thread(wait_until, lambda: not link.ready.is_set(), 30)
        stranger = HomeAssistantSide(link.port, STRANGER)
        await stranger.connect()
        await stranger.send(RunSatellite())
        refused = await stranger.until("error")
        utterance = request(link)
        cancelled = await asyncio.to_thread(wait_until, lambda: link.cancelled_utterance() == utterance, 30)
        assert cancelled, "a paused speaker cancels the request on the device"
        paused = {"stranger": await stranger.quiet_for(0.5), "ha": await ha.quiet_for(0.5)}
        await ha.send(RunSatellite())  # the household unmutes in Home Assistant
        assert await asyncio.to_thread(wait_until, link.ready.is_set, 30)
        request(link)
        resumed = await ha.until("audio-chunk")
        after = await stranger.quiet_for(0.5)
        await stranger.close()
        await ha.close()
        return {"refused": refused, **paused, "resumed": resumed, "stranger_after": after}

    seen = asyncio.run(attack())
    assert seen["refused"][-1].data["code"] == "not-paired"
    assert seen["stranger"] == [] and seen["ha"] == [], "nothing is sent to anyone while paused"
    assert [e.type for e in seen["resumed"]][:3] == ["detection", "run-pipeline", "audio-start"]
    assert seen["stranger_after"] == [], "the stranger never hears the household's request"


def test_the_pause_and_the_pin_survive_a_reconnect_and_a_restart(make_link: LinkFactory) -> None:
    first = make_link()

    async def pause_then_leave() -> None:
        ha = await running(first)
        await ha.send(PauseSatellite())
        assert await asyncio.to_thread(wait_until, lambda: not first.ready.is_set(), 30)
        await ha.close()

    asyncio.run(pause_then_leave())
    first.stop()
    restarted = make_link()  # a power cut later, same state directory
    utterance = request(restarted)
    assert wait_until(lambda: restarted.cancelled_utterance() == utterance, 30), "still paused, with no peer at all"

    async def after_restart() -> dict[str, list[Event]]:
        stranger = HomeAssistantSide(restarted.port, STRANGER)
        await stranger.connect()
        await stranger.send(RunSatellite())
        refused = await stranger.until("error")
        ha = HomeAssistantSide(restarted.port, HOME_ASSISTANT)  # reconnects, still muted: no run-satellite
        await ha.connect()
        await ha.send(Describe())
        described = await ha.until("info")
        utterance = request(restarted)
        assert await asyncio.to_thread(wait_until, lambda: restarted.cancelled_utterance() == utterance, 30)
        quiet = await ha.quiet_for(0.5)
        await ha.send(RunSatellite())
        assert await asyncio.to_thread(wait_until, restarted.ready.is_set, 30)
        request(restarted)
        streamed = await ha.until("audio-start")
        await stranger.close()
        await ha.close()
        return {"refused": refused, "described": described, "quiet": quiet, "streamed": streamed}

    seen = asyncio.run(after_restart())
    assert seen["refused"][-1].data["code"] == "not-paired", "the pin outlives the restart"
    assert seen["quiet"] == []
    assert [e.type for e in seen["streamed"]] == ["detection", "run-pipeline", "audio-start"]


def test_silent_sockets_are_hung_up_on_and_never_keep_home_assistant_out(make_link: LinkFactory) -> None:
    link = make_link(idle_seconds=0.5)

    async def crowd() -> list[str]:
        ha = await running(link)
        await ha.close()  # Home Assistant restarts...
        assert await asyncio.to_thread(wait_until, lambda: not link.ready.is_set(), 30)
        # ...and strangers from four addresses take every slot, pinging to stay.
        strangers = [HomeAssistantSide(link.port, f"127.0.0.{10 + n}") for n in range(MAX_PEERS)]
        for stranger in strangers:
            await stranger.connect()
            await stranger.send(Describe())
            await stranger.until("info")
        back = await running(link)  # Home Assistant is back: one stranger made room
        request(link)
        seen = [e.type for e in await back.until("audio-start")]
        for peer in [back, *strangers]:
            await peer.close()
        return seen

    assert asyncio.run(crowd()) == ["detection", "run-pipeline", "audio-start"]
    with socket.create_connection(("127.0.0.1", link.port), timeout=30) as silent:
        assert hung_up(silent), "a connection that sends nothing is closed after idle_seconds"


def test_one_address_holds_at_most_two_connections(make_link: LinkFactory) -> None:
    link = make_link()
    held = []
    for _ in range(MAX_PEERS_PER_ADDRESS):
        sock = socket.create_connection(("127.0.0.1", link.port), timeout=10, source_address=(STRANGER, 0))
        sock.sendall(b'{"type": "ping"}\n')
        assert json.loads(sock.makefile("rb").readline())["type"] == "pong"
        held.append(sock)
    try:
        with socket.create_connection(("127.0.0.1", link.port), timeout=10, source_address=(STRANGER, 0)) as extra:
            extra.sendall(b'{"type": "ping"}\n')
            assert hung_up(extra), "a third connection from one address is refused"
        with socket.create_connection(("127.0.0.1", link.port), timeout=10, source_address=("127.0.0.3", 0)) as other:
            other.sendall(b'{"type": "ping"}\n')
            assert json.loads(other.makefile("rb").readline())["type"] == "pong", "other addresses are served"
    finally:
        for sock in held:
            sock.close()


def test_allowed_peers_hang_up_on_everyone_else(make_link: LinkFactory) -> None:
    link = make_link(allowed_peers=["127.0.0.1/32"])
    with socket.create_connection(("127.0.0.1", link.port), timeout=10, source_address=(STRANGER, 0)) as stranger:
        stranger.sendall(b'{"type": "describe"}\n')
        assert hung_up(stranger)
    with socket.create_connection(("127.0.0.1", link.port), timeout=10) as home_assistant:
        home_assistant.sendall(b'{"type": "describe"}\n')
        assert json.loads(home_assistant.makefile("rb").readline())["type"] == "info"


def test_the_household_releases_the_pin_from_the_speaker_while_it_serves(
    make_link: LinkFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    link = make_link()

    async def pin() -> None:
        await (await running(link)).close()

    asyncio.run(pin())
    assert Control.open(tmp_path / "state").pinned_address == HOME_ASSISTANT

    assert device_main(["satellite-pair", "--state-dir", str(tmp_path / "state")]) == 0
    assert f"released {HOME_ASSISTANT}" in capsys.readouterr().out

    async def new_home_assistant() -> list[str]:
        other = await running(link, STRANGER)  # the household's new Home Assistant machine
        request(link)
        seen = [e.type for e in await other.until("audio-start")]
        await other.close()
        return seen

    assert asyncio.run(new_home_assistant()) == ["detection", "run-pipeline", "audio-start"]
    assert Control.open(tmp_path / "state").pinned_address == STRANGER


def test_an_unreadable_state_file_means_paused_and_pinned_to_nobody(tmp_path: Path) -> None:
    (tmp_path / "satellite.json").write_text("{not json")
    control = Control.open(tmp_path)
    assert control.paused and not control.may_run(HOME_ASSISTANT)
    control.release()
    assert control.may_run(HOME_ASSISTANT) and control.paused, "re-paired; the pause stays until a run"
    control.run(HOME_ASSISTANT)
    assert not control.paused and not control.may_run(STRANGER)


def test_ipv4_mapped_addresses_are_the_same_peer() -> None:
    from firmware.satellite.control import host_of

    assert host_of("::ffff:192.168.1.20") == "192.168.1.20"
    assert ipaddress.ip_address(host_of("fe80::1")).version == 6


def test_loopback_is_never_announced_and_ctrl_c_exits_cleanly(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "firmware.cli", "-v", "satellite", "--input", "sample", "--host", "127.0.0.1"]
    command += ["--port", "0", "--no-sounds", "--state-dir", str(tmp_path / "state")]
    speaker = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert speaker.stdout is not None
        for line in speaker.stdout:
            if json.loads(line)["type"] == "satellite_listening":
                break
        speaker.send_signal(signal.SIGINT)
        _, stderr = speaker.communicate(timeout=60)
    finally:
        speaker.kill()
    assert speaker.returncode == 0, stderr
    assert "not announced over zeroconf: 127.0.0.1 is not on the LAN" in stderr
    assert "advertised" not in stderr and "Task was destroyed" not in stderr and "Traceback" not in stderr


def test_a_pin_or_pause_the_disk_refused_is_kept_and_never_undone_by_a_stranger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from firmware.satellite import control as control_module

    control = Control.open(tmp_path)
    control.run(HOME_ASSISTANT)

    def disk_full(_path: Path, _text: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(control_module, "write_atomically", disk_full)
    control.pause()  # not on disk: the file still says "running"
    assert control.paused and not control.may_run(STRANGER), "memory stays the truth until a write succeeds"
    fresh = Control.open(tmp_path / "empty")  # a first pin the disk refused
    fresh.run(HOME_ASSISTANT)
    assert not fresh.may_run(STRANGER), "the missing file does not unpin Home Assistant"


def test_a_release_by_the_household_is_not_written_back_by_a_pause_and_an_address_can_be_pinned_outright(
    tmp_path: Path,
) -> None:
    service = Control.open(tmp_path)
    service.run(HOME_ASSISTANT)
    assert Control.open(tmp_path).release() == HOME_ASSISTANT  # `satellite-pair`, another process
    service.pause()  # the old Home Assistant pauses: the release stays
    assert service.paused and Control.open(tmp_path).pinned_address is None
    Control.open(tmp_path).release(pin_to="::ffff:127.0.0.3")
    assert not service.may_run(STRANGER) and service.may_run("127.0.0.3")


def test_a_second_connection_from_home_assistant_never_closes_its_live_one(make_link: LinkFactory) -> None:
    link = make_link()

    async def crowd() -> list[str]:
        ha = await running(link)
        extra = [socket.create_connection(("127.0.0.1", link.port), timeout=10) for _ in range(MAX_PEERS_PER_ADDRESS)]
        try:
            for sock in extra:  # describe probes from the same machine
                sock.sendall(b'{"type": "ping"}\n')
            evicted = await asyncio.to_thread(wait_until, lambda: sum(hung_up_later(s) for s in extra) >= 1, 30)
            assert evicted, "one of the probes made room: one address holds at most two connections"
            request(link)
            return [e.type for e in await ha.until("audio-start")]
        finally:
            for sock in extra:
                sock.close()
            await ha.close()

    assert asyncio.run(crowd()) == ["detection", "run-pipeline", "audio-start"]


def hung_up_later(sock: socket.socket) -> bool:
    """Whether the speaker has closed `sock` (without waiting for it). What it sent before
    hanging up (a pong, when the ping was answered before the eviction) is read past."""
    sock.setblocking(False)
    try:
        while data := sock.recv(4096):
            del data
        return True  # b"": the end of the stream
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.setblocking(True)
