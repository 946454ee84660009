"""The Wyoming server on its own: discovery, strangers on the LAN, and no Home Assistant.

These run the link in this process without audio hardware (no output device: sounds and
spoken replies are off); `test_satellite.py` runs the whole speaker.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from wyoming.info import Describe, Info
from wyoming.satellite import RunSatellite
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from firmware.audio.output import Begin
from firmware.events import WakeDetected
from firmware.satellite.control import Control
from firmware.satellite.discovery import SERVICE_TYPE, instance_name
from firmware.satellite.link import SatelliteLink
from firmware.satellite.peers import MAX_PEERS
from firmware.satellite.settings import SatelliteSettings
from firmware.satellite.wire import MAX_PAYLOAD_BYTES
from scripts.satellite_rig import HomeAssistantSide
from tests.conftest import wait_until


@pytest.fixture
def link(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SatelliteLink]:
    name = f"earmark-test-{uuid.uuid4().hex[:8]}"
    zeroconf = getattr(request, "param", False)
    settings = SatelliteSettings(port=0, host="0.0.0.0", zeroconf=zeroconf, name=name)  # noqa: S104
    link = SatelliteLink(settings, ["alexa"], None, Control.open(tmp_path))
    link.start()
    yield link
    link.stop()


def wake(utterance_id: uuid.UUID) -> WakeDetected:
    return WakeDetected(audio_time_seconds=2.0, utterance_id=utterance_id, wake_word="alexa", score=0.99)


def raw_exchange(port: int, payload: bytes) -> bytes:
    """Send bytes as a stranger would and return what comes back before the server hangs up."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        received = b""
        try:
            sock.sendall(payload)
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass  # closed with our bytes unread: a hang-up all the same
        return received


@pytest.mark.parametrize("link", [True], indirect=True)
def test_home_assistant_discovers_the_speaker_over_zeroconf(link: SatelliteLink) -> None:
    async def browse() -> AsyncServiceInfo:
        zeroconf = AsyncZeroconf(ip_version=IPVersion.V4Only)
        try:
            info = AsyncServiceInfo(SERVICE_TYPE, f"{instance_name(link.name)}.{SERVICE_TYPE}")
            assert await info.async_request(zeroconf.zeroconf, 5000)
            return info
        finally:
            await zeroconf.async_close()

    found = asyncio.run(browse())
    assert found.port == link.port
    assert found.parsed_addresses(), "an address Home Assistant can connect to"


def test_describe_without_a_loudspeaker_asks_for_no_spoken_reply(link: SatelliteLink) -> None:
    async def home_assistant() -> tuple[Info, list[str], str]:
        ha = HomeAssistantSide(link.port)
        await ha.connect()
        await ha.send(Describe(), RunSatellite())
        info = Info.from_event((await ha.until("info"))[-1])
        assert await asyncio.to_thread(wait_until, link.ready.is_set, 10)
        utterance = uuid.uuid4()
        link.handle(wake(utterance))
        seen = await ha.until("audio-start")
        await ha.close()
        return info, [e.type for e in seen], seen[1].data["end_stage"]

    info, seen, end_stage = asyncio.run(home_assistant())
    assert info.snd == [] and info.satellite is not None and info.satellite.name == link.name
    assert seen == ["detection", "run-pipeline", "audio-start"]
    assert end_stage == "handle"


def test_a_wake_word_with_no_home_assistant_is_cancelled_on_the_device(link: SatelliteLink) -> None:
    utterance = uuid.uuid4()
    link.handle(wake(utterance))
    assert wait_until(lambda: link.cancelled_utterance() == utterance, 10)
    assert link.cancelled_utterance() is None, "asked once"


@pytest.mark.parametrize(
    "stranger",
    [
        b"not json\n",
        json.dumps({"type": "audio-chunk", "payload_length": MAX_PAYLOAD_BYTES * 1000}).encode() + b"\n",
        json.dumps({"type": "describe", "data_length": -1}).encode() + b"\n",
        b"{" + b" " * 100_000,  # a header that never ends
        json.dumps({"type": "x", "data": [1, 2]}).encode() + b"\n",
        b"[" * 10_000 + b"]" * 10_000 + b"\n",  # nested past Python's recursion limit
        json.dumps({"type": "x", "data": []}).encode() + b"\n",
    ],
    ids=["not-json", "huge-payload", "negative-length", "endless-header", "data-not-object", "nested", "empty-list"],
)
def test_strangers_on_the_lan_are_hung_up_on_and_the_satellite_keeps_serving(
    link: SatelliteLink, stranger: bytes
) -> None:
    assert raw_exchange(link.port, stranger) == b""

    async def home_assistant() -> Info:
        ha = HomeAssistantSide(link.port)
        await ha.connect()
        await ha.send(Describe())
        info = Info.from_event((await ha.until("info"))[-1])
        await ha.close()
        return info

    assert asyncio.run(home_assistant()).satellite is not None


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "timer-started", "data": {"total_seconds": 5}},  # no id
        {"type": "timer-started", "data": {"id": "x" * 1000, "total_seconds": 5}},
        {"type": "timer-started", "data": {"id": "t", "total_seconds": "soon"}},
        {"type": "audio-start", "data": {"rate": 22050, "width": 5, "channels": 1}},
    ],
    ids=["no-id", "long-id", "seconds-not-int", "bad-width"],
)
def test_a_malformed_event_is_ignored_without_dropping_home_assistant(
    link: SatelliteLink, bad: dict[str, object]
) -> None:
    lines = [{"type": "run-satellite"}, bad, {"type": "describe"}]
    with socket.create_connection(("127.0.0.1", link.port), timeout=10) as sock:
        sock.sendall(b"".join(json.dumps(line).encode() + b"\n" for line in lines))
        header = sock.makefile("rb").readline()
    assert json.loads(header)["type"] == "info"


def test_connections_past_the_limit_are_refused_and_the_first_ones_kept(link: SatelliteLink) -> None:
    # From as many addresses: one address holds at most two (test_satellite_peers.py).
    held = [
        socket.create_connection(("127.0.0.1", link.port), timeout=10, source_address=(f"127.0.0.{10 + n}", 0))
        for n in range(MAX_PEERS)
    ]
    try:
        for sock in held:  # each one is being served
            sock.sendall(b'{"type": "ping"}\n')
            assert json.loads(sock.makefile("rb").readline())["type"] == "pong"
        assert raw_exchange(link.port, b'{"type": "describe"}\n') == b"", "one too many: closed"
    finally:
        for sock in held:
            sock.close()


def test_a_format_the_speaker_cannot_play_is_refused_by_name() -> None:
    assert Begin(22050, 2, 1).checked() == Begin(22050, 2, 1)
    for bad, name in (
        (Begin(22050, 4, 1), "width"),
        (Begin(1_000_000, 2, 1), "rate"),
        (Begin(16000, 2, 8), "channels"),
    ):
        with pytest.raises(ValueError, match=name):
            bad.checked()
