"""Ingest that no device can take down, and that never loses or deletes a stored clip.

Real mosquitto, the real pipeline (recognition off unless a test needs it), a device
that sends whatever it likes.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contract import topics
from contract.audio import seconds_to_bytes
from contract.messages import CHUNK_SECONDS, EndReason, UtteranceEnd, encode_json
from contract.mqtt import MqttSettings, build_client, connect_in_background
from firmware.consent_cache import ConsentCache
from firmware.frontend import FrontEnd
from firmware.outbox import UplinkSettings
from firmware.uplink import DeviceIdentity, Uplink
from firmware.wake import WakeWordDetector
from pipeline.device_claims import DeviceRateLimit
from pipeline.settings import IngestSettings, PipelineSettings
from tests.broker import Broker, free_port
from tests.conftest import REPO, Pcm, feed, wait_until
from tests.injector import Injector, client
from tests.pipeline_harness import RunningPipeline

CHUNK = bytes(seconds_to_bytes(CHUNK_SECONDS))  # 160 ms of silence, the contract's chunk


def start_pipeline(tmp_path: Path, broker: Broker, client_id: str | None = None, **ingest: Any) -> RunningPipeline:
    settings = PipelineSettings(
        **({"client_id": client_id} if client_id else {}),
        data_dir=tmp_path / "cloud",
        mqtt=MqttSettings(port=broker.port),
        ingest=IngestSettings(**{"stream_timeout_seconds": 3.0, "gap_wait_seconds": 0.3, **ingest}),
    )
    running = RunningPipeline(settings, model=None, enrolled=[("kitchen-1", "h-42"), ("hall-2", "h-7")])
    return running


@pytest.fixture
def pipeline(tmp_path: Path, broker: Broker) -> Iterator[RunningPipeline]:
    running = start_pipeline(tmp_path, broker)
    yield running
    running.stop()


def rss_mib() -> float:
    """Resident memory of this process (the pipeline runs in it), now."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def stored(pipeline: RunningPipeline, utterance_id: uuid.UUID) -> Any:
    """The clip once saved (row and audio commit together)."""
    assert pipeline.wait_until(lambda: pipeline.store.get(utterance_id) is not None)
    return pipeline.store.get(utterance_id)


def test_numbers_a_device_claims_cost_nothing(broker: Broker, pipeline: RunningPipeline) -> None:
    device = Injector(broker)
    stats = pipeline.service.stats
    before = rss_mib()
    utterance_id = uuid.uuid4()
    device.start(utterance_id)
    device.chunk(utterance_id, 0, CHUNK)
    device.chunk(utterance_id, 2**31, CHUNK)  # far past the cloud's bound for one utterance
    device.chunk(utterance_id, 1 + 64, CHUNK)  # inside the bound, past the sequence window
    device.send(  # the wire allows 2^16 chunks; the cloud allows what max_utterance_seconds needs
        device.topic(utterance_id, topics.UtterancePart.END),
        encode_json(UtteranceEnd(utterance_id=utterance_id, reason=EndReason.SILENCE, chunk_count=2**16)),
    )
    expected = ("sequence_out_of_bounds", "sequence_out_of_window", "chunk_count_out_of_bounds")
    assert pipeline.wait_until(lambda: all(stats.rejected[code] == 1 for code in expected)), stats.rejected
    device.chunk(utterance_id, 1, CHUNK)
    device.end(utterance_id, 2)
    clip = stored(pipeline, utterance_id)
    assert (clip.status, clip.missing_chunks, clip.duration_seconds) == ("complete", 0, 0.32)
    assert rss_mib() - before < 50
    device.close()


def test_retained_utterance_messages_are_never_served(tmp_path: Path, broker: Broker) -> None:
    device = Injector(broker)
    poisoned = uuid.uuid4()
    pipeline = start_pipeline(tmp_path, broker)
    worker = device.worker
    # Retained before the worker (re)subscribes: it must not replay them when it does.
    device.send(device.topic(poisoned, topics.UtterancePart.AUDIO), CHUNK, retain=True)
    pipeline.stop()
    pipeline = start_pipeline(tmp_path, broker, client_id=worker)
    try:
        start_topic = topics.utterance("kitchen-1", poisoned, topics.UtterancePart.START)
        good = device.stream([CHUNK])
        assert stored(pipeline, good).status == "complete"
        assert pipeline.service.stats.orphan_chunks_dropped == 0  # the retained chunk never arrived
        live = uuid.uuid4()
        device.start(live)  # a live retained publish is flagged as such and ignored
        device.send(start_topic, b"{}", retain=True)
        assert pipeline.wait_until(lambda: pipeline.service.stats.retained_ignored >= 1)
        assert pipeline.store.get(poisoned) is None
    finally:
        pipeline.stop()
        device.close()


def test_a_redelivered_utterance_after_a_restart_changes_nothing(
    tmp_path: Path, broker: Broker, pipeline: RunningPipeline
) -> None:
    device = Injector(broker)
    utterance_id = uuid.uuid4()
    device.start(utterance_id)
    device.chunk(utterance_id, 0, b"\x01\x00" * 2560)
    device.end(utterance_id, 1)
    stored(pipeline, utterance_id)
    original = pipeline.store.audio(utterance_id)
    pipeline.stop()
    restarted = start_pipeline(tmp_path, broker)
    try:
        # What a device's QoS 1 outbox does after a reconnect: the whole utterance again.
        device.start(utterance_id)
        device.chunk(utterance_id, 0, CHUNK)
        device.end(utterance_id, 1)
        assert restarted.wait_until(lambda: restarted.service.stats.duplicates >= 1)
        assert original is not None and restarted.store.audio(utterance_id) == original
        assert restarted.store.count() == 1
    finally:
        restarted.stop()
        device.close()


def test_one_device_at_its_quota_cannot_starve_another_household(tmp_path: Path, broker: Broker) -> None:
    # The two admitted streams must stay open for the whole flood, however slowly a busy
    # machine publishes it: with the default 3 s of silence they would end and free slots.
    pipeline = start_pipeline(tmp_path, broker, stream_timeout_seconds=120.0, end_grace_seconds=300.0)
    flooder = Injector(broker)
    neighbour = Injector(broker, device="hall-2", household="h-7")
    try:
        flood = [uuid.uuid4() for _ in range(2000)]
        for utterance_id in flood:  # valid starts, never ended
            flooder.start(utterance_id)
        stats = pipeline.service.stats
        assert pipeline.wait_until(lambda: stats.rejected["device_quota"] >= len(flood) - 2)
        assert pipeline.service.open_streams <= 2
        request = neighbour.stream([CHUNK, CHUNK])
        assert stored(pipeline, request).status == "complete"
    finally:
        pipeline.stop()
        for i in (flooder, neighbour):
            i.close()


def test_a_stream_ends_at_the_clouds_length_limit(tmp_path: Path, broker: Broker) -> None:
    pipeline = start_pipeline(tmp_path, broker, max_utterance_seconds=2.0)
    device = Injector(broker)
    try:
        too_long = device.stream([CHUNK] * 40)  # 6.4 s, sent as fast as the broker takes it
        clip = stored(pipeline, too_long)
        assert (clip.end_reason, clip.status, clip.duration_seconds) == ("max_length", "complete", 2.0)
    finally:
        pipeline.stop()
        device.close()


def test_a_device_cannot_hold_a_stream_open_forever(tmp_path: Path, broker: Broker) -> None:
    pipeline = start_pipeline(tmp_path, broker, max_utterance_seconds=1.0, end_grace_seconds=1.0)
    device = Injector(broker)
    try:
        utterance_id = uuid.uuid4()
        device.start(utterance_id)
        device.chunk(utterance_id, 0, CHUNK)
        # A duplicate every 0.3 s keeps the idle timer fresh; the absolute deadline does not move.
        for _ in range(40):
            if pipeline.store.get(utterance_id) is not None:
                break
            device.chunk(utterance_id, 0, CHUNK)
            time.sleep(0.3)
        clip = pipeline.store.get(utterance_id)
        assert clip is not None and clip.status == "timed_out"
    finally:
        pipeline.stop()
        device.close()


def closed_port() -> int:
    port = free_port()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    return port


def test_an_unreachable_broker_is_said_once_and_sigterm_still_stops_the_pipeline(tmp_path: Path) -> None:
    port = closed_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "--data-dir", str(tmp_path / "cloud"), "run",
         "--broker", f"127.0.0.1:{port}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    line = process.stderr.readline()  # blocks until the first warning: no sleep needed
    assert f"cannot reach the broker at mqtt://127.0.0.1:{port}" in line and "refused" in line.lower()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert "pipeline_ready" not in out and err.count("cannot reach the broker") == 0  # said once, not per retry


def test_a_device_says_when_it_cannot_reach_the_broker(tmp_path: Path) -> None:
    port = closed_port()
    done = subprocess.run(
        [sys.executable, "-m", "firmware.cli", "listen", "--input", "sample", "--stream",
         "--broker", f"127.0.0.1:{port}", "--device-id", "kitchen-1", "--household-id", "h-42",
         "--state-dir", str(tmp_path), "--result-timeout", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.stderr.count(f"cannot reach the broker at mqtt://127.0.0.1:{port}") == 1, done.stderr


def test_every_earmark_client_turns_nagle_off(broker: Broker) -> None:
    settings = MqttSettings(port=broker.port)
    peer = build_client(settings, "nodelay-check")
    connected: list[bool] = []
    peer.on_connect = lambda *_args: connected.append(True)
    connect_in_background(peer, settings, "the test")
    try:
        assert wait_until(lambda: bool(connected), 10)
        sock = peer.socket()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        peer.loop_stop()
        peer.disconnect()


def streaming_device(
    tmp_path: Path, broker: Broker, detector: WakeWordDetector, make_frontend: Any
) -> tuple[Uplink, FrontEnd, list[Any]]:
    """kitchen-1's front end wired to a started uplink (no consent key: every clip says 'no review')."""
    uplink = Uplink(
        DeviceIdentity(device_id="kitchen-1", household_id="h-42"),
        MqttSettings(port=broker.port),
        UplinkSettings(),
        ConsentCache(tmp_path / "consent.json", "h-42", None),
    )
    uplink.start()
    frontend, events = make_frontend(detector)
    frontend.subscribe(uplink.handle)
    return uplink, frontend, events


def test_the_device_sends_the_chunk_size_the_contract_says(
    tmp_path: Path,
    broker: Broker,
    pipeline: RunningPipeline,
    alexa_detector: WakeWordDetector,
    make_frontend: Any,
    sample_pcm: Pcm,
) -> None:
    sizes: list[tuple[int, int]] = []
    watcher = client(broker, "watcher")
    watcher.on_message = lambda _c, _u, m: sizes.append((m.payload[1], len(m.payload) - 8))
    watcher.subscribe(topics.ROOT + "/devices/kitchen-1/utterances/+/audio/+", qos=1)
    uplink, frontend, _events = streaming_device(tmp_path, broker, alexa_detector, make_frontend)
    try:
        assert wait_until(uplink.connected.is_set, 10)
        feed(frontend, sample_pcm)
        frontend.end_of_input()
        assert uplink.wait_drained(20)
        assert wait_until(lambda: len(sizes) >= 10)
    finally:
        uplink.stop(drain_seconds=2)
        watcher.loop_stop()
        watcher.disconnect()
    full = len(CHUNK)
    preroll = [size for flags, size in sizes if flags & 1]
    speech = [size for flags, size in sizes if not flags & 1]
    # Whole 160 ms chunks; only the tail of the pre-roll and of the request may be shorter.
    assert all(size == full for size in preroll[:-1]) and all(size == full for size in speech[:-1])
    assert speech and 0 < speech[-1] <= full and len(sizes) > 5


def test_peak_rss_stays_bounded_under_a_chunk_flood(broker: Broker, pipeline: RunningPipeline) -> None:
    before = rss_mib()
    device = Injector(broker)
    pcm = bytes(6400)  # the largest legal chunk
    floods = [uuid.uuid4() for _ in range(4)]
    for utterance_id in floods:  # 2 admitted (device quota), 2 refused; all chunks sent anyway
        device.start(utterance_id)
    for sequence in range(600):  # 15 MB in total
        for utterance_id in floods:
            device.client.publish(
                device.topic(utterance_id, topics.UtterancePart.AUDIO),
                bytes([1, 0, 0, 0]) + sequence.to_bytes(4, "big") + pcm,
                qos=1,
            )
    good = Injector(broker, device="hall-2", household="h-7").stream([CHUNK])
    assert stored(pipeline, good).status == "complete"
    assert rss_mib() - before < 100
    device.close()


def test_every_pipeline_worker_has_a_client_id_of_its_own() -> None:
    ids = {PipelineSettings().client_id for _ in range(3)}
    assert len(ids) == 3 and all(i.startswith("earmark-pipeline-") for i in ids)


def test_a_flooding_device_is_held_to_its_message_rate_and_others_are_not() -> None:
    now = [0.0]
    limit = DeviceRateLimit(
        IngestSettings(max_device_messages_per_second=100, device_message_burst=200), lambda: now[0]
    )
    assert sum(limit.allow("flooder") for _ in range(1000)) == 200  # the burst, then nothing
    assert limit.allow("kitchen-1")  # another device is untouched
    now[0] = 1.0
    assert sum(limit.allow("flooder") for _ in range(1000)) == 100  # one second's worth
    allowed = []
    for message in range(7 * 60):  # a real speaker: ~7 messages a second for a minute, never refused
        now[0] = 2.0 + message / 7
        allowed.append(limit.allow("hall-2"))
    assert all(allowed)


def test_a_device_holds_its_outbox_until_a_pipeline_listens(
    tmp_path: Path, broker: Broker, alexa_detector: WakeWordDetector, make_frontend: Any, sample_pcm: Pcm
) -> None:
    # A broker restarted without persistence acknowledges, then drops, what is published
    # before the pipeline has subscribed again: the device must not send into that void.
    published: list[str] = []
    watcher = client(broker, "watcher")
    watcher.on_message = lambda _c, _u, m: published.append(m.topic)
    watcher.subscribe(topics.utterance_filter("kitchen-1"), qos=1)
    uplink, frontend, events = streaming_device(tmp_path, broker, alexa_detector, make_frontend)
    try:
        assert wait_until(uplink.connected.is_set, 10)
        feed(frontend, sample_pcm)
        frontend.end_of_input()
        assert not uplink.wait_drained(1.0) and published == []  # held: nobody listens yet
        pipeline = start_pipeline(tmp_path, broker)
        try:
            assert uplink.wait_drained(20)
            [ready] = [e for e in events if type(e).__name__ == "UtteranceReady"]
            clip = stored(pipeline, ready.utterance_id)
            assert (clip.status, clip.missing_chunks) == ("complete", 0)
        finally:
            pipeline.stop()
        # A worker that stops clears its presence: the device holds again.
        assert wait_until(lambda: not uplink.pipeline_listening.is_set(), 10)
    finally:
        uplink.stop(drain_seconds=1)
        watcher.loop_stop()
        watcher.disconnect()


def test_chunks_before_a_start_never_cost_a_device_its_quota(broker: Broker, pipeline: RunningPipeline) -> None:
    device = Injector(broker)
    for _ in range(2):  # what once leaked a stream slot for good
        utterance_id = uuid.uuid4()
        device.chunk(utterance_id, 100, CHUNK)  # far ahead, before its start
        device.chunk(utterance_id, 0, CHUNK)
        device.start(utterance_id)
        device.end(utterance_id, 1)
        assert stored(pipeline, utterance_id).status == "complete"
    assert pipeline.wait_until(lambda: pipeline.service.open_streams == 0)
    later = device.stream([CHUNK])  # the device still has its whole quota
    assert stored(pipeline, later).status == "complete"
    assert pipeline.service.stats.rejected["device_quota"] == 0
    device.close()


def test_a_start_sent_again_after_nobody_followed_its_claim_is_served(tmp_path: Path, broker: Broker) -> None:
    pipeline = start_pipeline(tmp_path, broker)
    device = Injector(broker)
    try:
        utterance_id = uuid.uuid4()
        device.start(utterance_id)  # claimed, then never followed (the device took another worker's claim)
        assert pipeline.wait_until(lambda: pipeline.service.stats.unfollowed == 1, 15)
        assert pipeline.store.get(utterance_id) is None  # no speech reached this worker: nothing kept
        # Later the device sends it again (its worker died) and the start lands here: it is
        # served, not answered "stored" from memory.
        device.start(utterance_id)
        device.chunk(utterance_id, 0, CHUNK)
        device.end(utterance_id, 1)
        assert stored(pipeline, utterance_id).status == "complete"
    finally:
        pipeline.stop()
        device.close()
