"""Many workers, one truth: the rules that span messages hold whichever worker a message reaches.

Two real pipeline workers share one broker (MQTT 5 shared subscription: mosquitto hands
the starts out round-robin) and one database, on SQLite and on PostgreSQL. A hand-made
device sends its starts to the group and the rest of an utterance to a worker it names,
as a buggy or hostile device could; the registry is the real one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contract.messages import EndReason
from contract.mqtt import MqttSettings
from pipeline.settings import IngestSettings, PipelineSettings
from pipeline.store import SqlClipStore, StartClaim
from review_opt_out.registry import Channel, Registry
from review_opt_out.signing import create_key
from tests.broker import Broker
from tests.injector import RoutedInjector
from tests.pipeline_harness import RunningPipeline

AUDIO = [bytes(5120)] * 3  # three contract-sized chunks of silence
WAIT_SECONDS = 30.0


class RoutedDevice(RoutedInjector):
    """The routed device, at the fixture's consent version; it sends a whole request in one call."""

    def start(self, utterance_id: uuid.UUID, **changes: Any) -> None:
        # The fixture's households are at consent version 2, which allows review for h-42.
        super().start(utterance_id, **{"consent_version": 2, **changes})

    def start_claimed(self, utterance_id: uuid.UUID, **changes: Any) -> str:
        worker = super().start_claimed(utterance_id, **{"consent_version": 2, **changes})
        assert worker is not None
        return worker

    def audio(self, utterance_id: uuid.UUID, end: bool = True) -> None:
        for sequence, pcm in enumerate(AUDIO):
            self.chunk(utterance_id, sequence, pcm)
        if end:
            self.end(utterance_id, len(AUDIO))


@dataclass
class Cloud:
    broker: Broker
    data: Path
    workers: dict[str, RunningPipeline]
    registry: Registry

    def worker(self, name: str) -> RunningPipeline:
        return self.workers[name]

    def stored(self, utterance_id: uuid.UUID) -> Any:
        store = next(iter(self.workers.values())).store
        assert next(iter(self.workers.values())).wait_until(lambda: store.get(utterance_id) is not None)
        return store.get(utterance_id)

    def speakers(self, count: int) -> list[RoutedDevice]:
        """`count` more speakers enrolled in household h-42."""
        names = [f"s-{n}" for n in range(count)]
        for name in names:
            next(iter(self.workers.values())).store.enroll(name, "h-42")
        return [RoutedDevice(self.broker, device=name) for name in names]

    def admitted(self, utterance_id: uuid.UUID) -> None:
        """Wait until a worker recorded the utterance's first start (a claim comes before that)."""
        ledger = "SELECT 1 FROM utterances WHERE utterance_id = ?"
        assert next(iter(self.workers.values())).wait_until(
            lambda: self.registry.db.execute(ledger, (str(utterance_id),)).fetchone() is not None
        )

    def get(self, utterance_id: uuid.UUID) -> Any:
        return self.registry.db.execute(
            "SELECT review_allowed, review_blocked FROM clips WHERE utterance_id = ?", (str(utterance_id),)
        ).fetchone()


@pytest.fixture
def cloud(tmp_path: Path, database: str | None) -> Iterator[Cloud]:
    broker = Broker(tmp_path)
    broker.start()
    data = tmp_path / "cloud"
    create_key(data)
    workers: dict[str, RunningPipeline] = {}
    for name in ("worker-a", "worker-b"):
        settings = PipelineSettings(
            data_dir=data,
            database=database,
            client_id=name,
            mqtt=MqttSettings(port=broker.port),
            ingest=IngestSettings(stream_timeout_seconds=3.0, gap_wait_seconds=0.3),
        )
        workers[name] = RunningPipeline(
            settings, model=None, enrolled=[("kitchen-1", "h-42"), ("hall-2", "h-42"), ("flat-9", "h-7")]
        )
    registry = Registry(data, database=database)
    for household in ("h-42", "h-7"):
        registry.create_household(household, household.upper())
    registry.set_consent("h-42", True, "ana", Channel.APP)  # v2 allows review: a lie would pay
    yield Cloud(broker, data, workers, registry)
    for worker in workers.values():  # those a test stopped are gone from here
        worker.stop()
    registry.close()
    broker.stop()


def other(worker: str) -> str:
    return "worker-b" if worker == "worker-a" else "worker-a"


def test_a_conflicting_start_on_another_worker_while_streaming_leaves_it_unreviewable(cloud: Cloud) -> None:
    device = RoutedDevice(cloud.broker)
    utterance = uuid.uuid4()
    first = device.start_claimed(utterance, review_allowed=False, consent_version=2)
    cloud.admitted(utterance)
    # mosquitto deals the group's starts out in turn: the second lands on the other worker.
    second = device.start_claimed(utterance, review_allowed=True, consent_version=2)
    assert second == other(first)
    device.routes[utterance] = first
    device.audio(utterance)
    device.wait_receipt(utterance)
    clip = cloud.stored(utterance)
    assert (clip.review_allowed, clip.review_blocked) == (False, "conflicting_start")  # the first tag is kept
    stats = cloud.worker(second).service.stats
    assert cloud.worker(second).wait_until(lambda: stats.rejected["conflicting_start"] == 1)
    assert cloud.registry.sample(1.0) == 0
    assert cloud.registry.verdict(str(utterance)) == "blocked_by_cloud"
    device.close()


def test_a_conflicting_start_reaching_the_worker_that_did_not_store_narrows_the_stored_clip(cloud: Cloud) -> None:
    device = RoutedDevice(cloud.broker)
    utterance = uuid.uuid4()
    storer = device.start_claimed(utterance, review_allowed=True, consent_version=2)
    device.audio(utterance)
    device.wait_receipt(utterance)
    assert cloud.stored(utterance).review_blocked is None
    # Another household's tag, sent after the store: the next start goes to the other worker.
    assert device.start_claimed(utterance, review_allowed=True, consent_version=2, household_id="h-7") == other(storer)
    assert cloud.worker(storer).wait_until(lambda: cloud.get(utterance)[1] == "conflicting_start")
    # An identical start after that is a duplicate, on either worker, and changes nothing.
    honest = uuid.uuid4()
    device.start_claimed(honest, review_allowed=True, consent_version=2)
    device.audio(honest)
    device.wait_receipt(honest)
    device.start(honest, review_allowed=True, consent_version=2)
    device.start(honest, review_allowed=True, consent_version=2)
    stats = [worker.service.stats for worker in cloud.workers.values()]
    assert cloud.worker(storer).wait_until(lambda: sum(s.duplicates for s in stats) >= 2)
    assert cloud.registry.sample(1.0) == 1  # only `honest`
    assert cloud.registry.verdict(str(utterance)) == "blocked_by_cloud"
    assert cloud.registry.verdict(str(honest)) == "eligible"
    device.close()


def test_delete_today_covers_a_request_resent_to_another_worker_after_its_first_worker_stopped(
    cloud: Cloud,
) -> None:
    kitchen = RoutedDevice(cloud.broker)
    on_its_way = uuid.uuid4()
    first = kitchen.start_claimed(on_its_way)
    cloud.admitted(on_its_way)
    kitchen.audio(on_its_way, end=False)  # the request is mid-stream ...
    cloud.worker(first).stop()  # ... when its worker stops: it lets the part go
    del cloud.workers[first]
    # Said on the hall speaker, after the kitchen's request reached the cloud.
    command = uuid.uuid4()
    said_at = datetime.now(UTC)
    assert cloud.registry.delete_spoken("hall-2", str(command), today=True) >= 1
    # The kitchen's uplink sends the request again, whole, to the worker still there.
    assert kitchen.start_claimed(on_its_way) == other(first)
    kitchen.audio(on_its_way)
    kitchen.wait_receipt(on_its_way)  # answered as done: the device may forget it
    # Never seen by the cloud before the command, but captured before it today: also gone.
    offline = uuid.uuid4()
    kitchen.start_claimed(offline, capture_started_at=(said_at - timedelta(seconds=1)).isoformat())
    kitchen.audio(offline)
    kitchen.wait_receipt(offline)
    # Said after the command: kept.
    later = uuid.uuid4()
    kitchen.start_claimed(later)
    kitchen.audio(later)
    kitchen.wait_receipt(later)
    assert cloud.stored(later) is not None
    assert cloud.get(on_its_way) is None and cloud.get(offline) is None
    assert cloud.registry.sample(1.0) == 1  # only `later`
    kitchen.close()


def test_forget_that_covers_the_last_request_while_it_is_still_on_its_way(cloud: Cloud) -> None:
    kitchen = RoutedDevice(cloud.broker)
    kept = uuid.uuid4()
    kitchen.start_claimed(kept)
    kitchen.audio(kept)
    kitchen.wait_receipt(kept)
    last = uuid.uuid4()
    first = kitchen.start_claimed(last)
    cloud.admitted(last)
    kitchen.audio(last, end=False)
    cloud.worker(first).stop()
    del cloud.workers[first]
    command = uuid.uuid4()
    assert cloud.registry.delete_spoken("kitchen-1", str(command), today=False) == 2  # `last` and the command
    assert kitchen.start_claimed(last) == other(first)
    kitchen.audio(last)
    kitchen.wait_receipt(last)
    assert cloud.get(last) is None
    assert cloud.get(kept) is not None  # one request before the last is not "what I just said"
    kitchen.close()


def test_an_utterance_id_of_another_device_vetoes_nothing(cloud: Cloud) -> None:
    kitchen = RoutedDevice(cloud.broker)
    neighbour = RoutedDevice(cloud.broker, device="hall-2")
    utterance = uuid.uuid4()
    kitchen.start_claimed(utterance)
    cloud.admitted(utterance)
    neighbour.start_claimed(utterance, review_allowed=False, consent_version=0)  # same id, another device
    kitchen.audio(utterance)
    kitchen.wait_receipt(utterance)
    assert cloud.stored(utterance).review_blocked is None
    stats = [worker.service.stats for worker in cloud.workers.values()]
    assert next(iter(cloud.workers.values())).wait_until(
        lambda: sum(s.rejected["identity_mismatch"] for s in stats) == 1
    )
    kitchen.close()
    neighbour.close()


def loud(seconds: float = 0.96) -> list[bytes]:
    """Contract-sized chunks of a loud tone (what a near microphone hears)."""
    samples = int(seconds * 16000)
    tone = (np.sin(np.arange(samples) * 2 * np.pi * 440 / 16000) * 12000).astype("<i2").tobytes()
    return [tone[i : i + 5120] for i in range(0, len(tone), 5120)]


def cancelled(device: RoutedDevice, utterance_id: uuid.UUID) -> bool:
    return utterance_id in device.cancellations


@pytest.mark.parametrize("reason", [EndReason.NO_SPEECH, EndReason.MUTED, EndReason.ABANDONED])
def test_a_speaker_that_wins_by_claim_and_then_says_nothing_hands_the_request_to_the_one_that_spoke(
    cloud: Cloud, reason: EndReason
) -> None:
    honest = RoutedDevice(cloud.broker, device="kitchen-1")
    liar = RoutedDevice(cloud.broker, device="hall-2")
    request, fake = uuid.uuid4(), uuid.uuid4()
    # The liar claims a perfect wake and sends loud audio first, then ends without speech.
    workers = {liar.start_claimed(fake, wake_score=1.0), honest.start_claimed(request, wake_score=0.6)}
    assert workers == {"worker-a", "worker-b"}  # one contest across two workers
    for sequence, pcm in enumerate(loud()):
        liar.chunk(fake, sequence, pcm)
    liar.end(fake, len(loud()), reason)
    honest.audio(request)
    honest.wait_receipt(request)
    clip = cloud.stored(request)
    assert clip.end_reason == "silence"  # the household's request was answered and kept
    assert liar.wait_cancelled(fake) and cloud.get(fake) is None  # nothing of the liar's
    assert not cancelled(honest, request)
    honest.close()
    liar.close()


def test_two_speakers_on_two_workers_hear_one_request_and_only_the_nearer_answers(cloud: Cloud) -> None:
    near = RoutedDevice(cloud.broker, device="kitchen-1")
    far = RoutedDevice(cloud.broker, device="hall-2")
    said, heard_far = uuid.uuid4(), uuid.uuid4()
    # The far one claims the better wake score: the cloud goes by what it received.
    workers = {far.start_claimed(heard_far, wake_score=0.99), near.start_claimed(said, wake_score=0.7)}
    assert workers == {"worker-a", "worker-b"}
    quiet = [bytes(np.frombuffer(pcm, "<i2") // 8) for pcm in loud()]
    for sequence, (a, b) in enumerate(zip(loud(), quiet, strict=True)):
        near.chunk(said, sequence, a)
        far.chunk(heard_far, sequence, b)
    near.end(said, len(quiet))
    far.end(heard_far, len(quiet))
    near.wait_receipt(said)
    assert far.wait_cancelled(heard_far)
    assert cloud.stored(said) is not None and cloud.get(heard_far) is None
    assert not cancelled(near, said)
    near.close()
    far.close()


def test_resent_requests_never_contest_and_every_one_is_stored(cloud: Cloud) -> None:
    # After a worker was killed, six speakers of one household send what their outboxes
    # held, captured a while ago, at once; a seventh speaks now.
    devices = cloud.speakers(7)
    # The youngest a resend after a lost worker can be: the pre-roll (1.5 s) and the
    # device's 2 s grace for the worker's presence.
    queued = (datetime.now(UTC) - timedelta(seconds=3.5)).isoformat()
    requests = []
    for index, device in enumerate(devices):
        utterance = uuid.uuid4()
        device.start_claimed(utterance, **({} if index == 6 else {"capture_started_at": queued}))
        requests.append(utterance)
    for device, utterance in zip(devices, requests, strict=True):
        device.audio(utterance)
    for device, utterance in zip(devices, requests, strict=True):
        device.wait_receipt(utterance)
        assert cloud.stored(utterance) is not None and not cancelled(device, utterance)
    for device in devices:
        device.close()


def test_a_device_that_enters_too_many_contests_answers_alone(tmp_path: Path, database: str | None) -> None:
    store = SqlClipStore(tmp_path, database=database)
    store.enroll("kitchen-1", "h-42")
    # A window of zero: each request is a contest of its own (no waiting a second between them).
    rules = IngestSettings(arbitration_window_seconds=0).contest_rules()
    entered = []
    for _ in range(rules.contests_per_minute + 3):
        claim = StartClaim(uuid.uuid4(), "kitchen-1", "h-42", False, 1, datetime.now(UTC))
        entered.append(store.admit_start(claim, rules).contest_id is not None)
    assert entered == [True] * rules.contests_per_minute + [False] * 3
    store.close()


def test_two_workers_with_data_directories_of_their_own_share_only_broker_and_database(tmp_path: Path) -> None:
    # As on two machines: nothing on disk in common. SQLite lives in its data directory,
    # so this is PostgreSQL's case.
    from tests.postgres import fresh_database

    broker = Broker(tmp_path)
    broker.start()
    workers: list[RunningPipeline] = []
    with fresh_database() as url:
        try:
            for name in ("machine-a", "machine-b"):
                settings = PipelineSettings(
                    data_dir=tmp_path / name,
                    database=url,
                    client_id=name,
                    mqtt=MqttSettings(port=broker.port),
                    ingest=IngestSettings(stream_timeout_seconds=3.0, gap_wait_seconds=0.3),
                )
                workers.append(RunningPipeline(settings, model=None, enrolled=[("kitchen-1", "h-42")]))
            create_key(tmp_path / "app")
            registry = Registry(tmp_path / "app", database=url)  # the app, on a third machine
            registry.create_household("h-42", "H-42")
            registry.set_consent("h-42", True, "ana", Channel.APP)
            device = RoutedDevice(broker)
            said = [uuid.uuid4() for _ in range(4)]
            claimers = set()
            for utterance in said:
                claimers.add(device.start_claimed(utterance))
                device.audio(utterance, end=True)
            for utterance in said:
                device.wait_receipt(utterance)
            assert claimers == {"machine-a", "machine-b"}
            for utterance in said:  # every clip's audio, whichever machine stored it
                assert registry.recording_audio("h-42", str(utterance))[:4] == b"RIFF"
            # Conflicting starts for clips stored on each machine: both are ruled out of review.
            assert {device.claims[u][0] for u in said[:2]} == {"machine-a", "machine-b"}
            for utterance in said[:2]:
                device.start(utterance, review_allowed=False)
            for utterance in said[:2]:
                assert workers[0].wait_until(lambda u=utterance: registry.verdict(str(u)) == "blocked_by_cloud")
            assert registry.sample(1.0) == 2
            assert not any((tmp_path / name / "clips").exists() for name in ("machine-a", "machine-b"))
            device.close()
            registry.close()
        finally:
            for worker in workers:
                worker.stop()
            broker.stop()


def test_requests_resent_together_after_their_worker_stopped_keep_their_own_contests(cloud: Cloud) -> None:
    # Six speakers of one household each say something of their own, a second or more
    # apart (the broker deals their starts to both workers in turn); one worker goes away
    # mid-way; the uplinks of its requests send them again to the other worker at once.
    # Arriving together makes them no contest: each keeps the contest it entered when it
    # was spoken, and every one is stored.
    devices = cloud.speakers(6)
    said: list[tuple[RoutedDevice, uuid.UUID, str, str]] = []
    for device in devices:
        utterance, captured = uuid.uuid4(), datetime.now(UTC).isoformat()
        worker = device.start_claimed(utterance, capture_started_at=captured)
        cloud.admitted(utterance)
        device.audio(utterance, end=False)
        said.append((device, utterance, captured, worker))
        time.sleep(IngestSettings().arbitration_window_seconds + 0.1)  # the next one is a moment of its own
    doomed = said[0][3]
    resent = [(d, u, c) for d, u, c, w in said if w == doomed]
    assert len(resent) >= 3
    cloud.worker(doomed).stop()
    del cloud.workers[doomed]
    for device, utterance, captured in resent:
        assert device.start_claimed(utterance, capture_started_at=captured) == other(doomed)
    for device, utterance, _captured, _worker in said:
        device.audio(utterance)
    for device, utterance, _captured, _worker in said:
        device.wait_receipt(utterance)
        assert cloud.stored(utterance) is not None and not cancelled(device, utterance)
    for device in devices:
        device.close()
