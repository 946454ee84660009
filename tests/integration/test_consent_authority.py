"""The cloud decides consent: a device's tag may narrow review, never widen it.

Each test runs the real mosquitto, the real pipeline (recognition off: consent does not
depend on it) with one worker and again with two (starts dealt round-robin by the
broker, unclaimed parts split between them), and the real registry on one database, and
plays a device that lies: about its consent version, its types, its household, its
duplicates, its clock.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract import topics
from contract.consent_signature import load_public_key
from contract.messages import ConsentState, EndReason, encode_json
from contract.mqtt import MqttSettings
from firmware.consent_cache import ConsentCache
from pipeline.clip_schema import open_database
from pipeline.settings import IngestSettings, PipelineSettings
from review_opt_out import registry_core
from review_opt_out.cli import apply_retention
from review_opt_out.publisher import ConsentPublisher
from review_opt_out.registry import Channel, Registry
from review_opt_out.signing import ConsentSigner, create_key
from tests.broker import Broker
from tests.conftest import wait_until
from tests.injector import RoutedInjector as Injector
from tests.injector import client
from tests.pipeline_harness import RunningPipeline

AUDIO = [bytes(5120)] * 3  # three contract-sized chunks of silence


@dataclass
class Cloud:
    broker: Broker
    data: Path
    workers: list[RunningPipeline]
    registry: Registry
    database: str | None  # None: SQLite in `data`

    @property
    def pipeline(self) -> RunningPipeline:
        """Any worker: they share the database, so any one's store shows every clip."""
        return self.workers[0]

    def count(self, counter: str, key: str | None = None) -> int:
        """One of the workers' counters, summed over them all."""
        values = [getattr(worker.service.stats, counter) for worker in self.workers]
        return sum(value[key] if key is not None else value for value in values)

    def admitted(self, utterance_id: uuid.UUID) -> None:
        """Wait until a worker recorded the utterance's first start (its claim comes before that)."""
        ledger = "SELECT 1 FROM utterances WHERE utterance_id = ?"
        assert self.pipeline.wait_until(
            lambda: self.registry.db.execute(ledger, (str(utterance_id),)).fetchone() is not None
        )

    def stored(self, utterance_id: uuid.UUID) -> Any:
        assert self.pipeline.wait_until(lambda: self.pipeline.store.get(utterance_id) is not None)
        return self.pipeline.store.get(utterance_id)


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def cloud(tmp_path: Path, database: str | None, request: pytest.FixtureRequest) -> Iterator[Cloud]:
    broker = Broker(tmp_path)
    broker.start()
    data = tmp_path / "cloud"
    create_key(data)
    workers = []
    for n in range(request.param):
        settings = PipelineSettings(
            data_dir=data,
            database=database,
            client_id=f"worker-{n}",
            mqtt=MqttSettings(port=broker.port),
            ingest=IngestSettings(stream_timeout_seconds=3.0, gap_wait_seconds=0.3),
        )
        workers.append(RunningPipeline(settings, model=None, enrolled=[("kitchen-1", "h-42"), ("hall-2", "h-7")]))
    registry = Registry(data, database=database)
    for household in ("h-42", "h-7"):
        registry.create_household(household, household.upper())  # v1: review off
    yield Cloud(broker, data, workers, registry, database)
    for worker in workers:
        worker.stop()
    registry.close()
    broker.stop()


def send(injector: Injector, **start_fields: Any) -> uuid.UUID:
    utterance_id = uuid.uuid4()
    injector.start(utterance_id, **start_fields)
    for sequence, pcm in enumerate(AUDIO):
        injector.chunk(utterance_id, sequence, pcm)
    injector.end(utterance_id, len(AUDIO))
    return utterance_id


def test_a_consent_version_from_the_future_never_becomes_reviewable(cloud: Cloud) -> None:
    device = Injector(cloud.broker)
    # Opted out at v1; the device claims "allowed" under v2, which does not exist yet.
    forged = send(device, review_allowed=True, consent_version=2)
    assert cloud.stored(forged).review_allowed is True  # stored as claimed, for the household's history
    time.sleep(0.01)
    cloud.registry.set_consent("h-42", True, "ana", Channel.APP)  # now v2 exists and allows review
    honest = send(device, review_allowed=True, consent_version=2)
    cloud.stored(honest)
    assert cloud.registry.sample(1.0) == 1  # only the clip received after v2 came into force
    assert cloud.registry.verdict(str(forged)) == "tag_future"
    assert cloud.registry.verdict(str(honest)) == "eligible"
    assert cloud.registry.verdicts()["tag_future"] == 1
    device.close()


@pytest.mark.parametrize(
    ("field", "value"),
    [("review_allowed", "true"), ("review_allowed", "yes"), ("review_allowed", 1), ("review_allowed", 1.0),
     ("consent_version", "2"), ("consent_version", 2.0), ("consent_version", True)],
)  # fmt: skip
def test_a_coerced_tag_is_a_schema_violation_and_nothing_is_stored(cloud: Cloud, field: str, value: object) -> None:
    cloud.registry.set_consent("h-42", True, "ana", Channel.APP)  # v2 allows review: the lie would pay
    device = Injector(cloud.broker)
    lie = send(device, **{"review_allowed": True, "consent_version": 2, field: value})
    assert cloud.pipeline.wait_until(lambda: cloud.count("rejected", "schema_violation") >= 1)
    assert cloud.pipeline.wait_until(lambda: cloud.count("orphan_chunks_dropped") >= len(AUDIO), timeout_seconds=10)
    assert cloud.pipeline.store.get(lie) is None and cloud.registry.sample(1.0) == 0
    device.close()


def test_conflicting_starts_force_the_utterance_out_of_review(cloud: Cloud) -> None:
    cloud.registry.set_consent("h-42", True, "ana", Channel.APP)
    device = Injector(cloud.broker)
    # A second start for one utterance with another tag, while it streams.
    open_conflict = uuid.uuid4()
    device.start(open_conflict, review_allowed=False, consent_version=2)
    cloud.admitted(open_conflict)  # with two workers the second start may reach the other one
    device.start(open_conflict, review_allowed=True, consent_version=2)
    for sequence, pcm in enumerate(AUDIO):
        device.chunk(open_conflict, sequence, pcm)
    device.end(open_conflict, len(AUDIO))
    clip = cloud.stored(open_conflict)
    assert (clip.review_allowed, clip.review_blocked) == (False, "conflicting_start")  # the first tag is kept
    # After it was stored: a conflicting start narrows what is stored, even past a restart.
    stored_first = send(device, review_allowed=True, consent_version=2)
    assert cloud.stored(stored_first).review_blocked is None
    device.start(stored_first, review_allowed=True, consent_version=2, household_id="h-7")
    assert cloud.pipeline.wait_until(lambda: cloud.pipeline.store.get(stored_first).review_blocked is not None)
    # An identical redelivery is only a duplicate.
    duplicate = send(device, review_allowed=True, consent_version=2)
    cloud.stored(duplicate)
    device.start(duplicate, review_allowed=True, consent_version=2)
    assert cloud.pipeline.wait_until(lambda: cloud.count("duplicates") >= 1)
    assert cloud.registry.sample(1.0) == 1  # only `duplicate`
    assert cloud.registry.verdict(str(open_conflict)) == "blocked_by_cloud"
    assert cloud.registry.verdict(str(stored_first)) == "blocked_by_cloud"
    assert cloud.pipeline.wait_until(lambda: cloud.count("rejected", "conflicting_start") == 2)
    device.close()


def test_moving_a_device_to_another_household_takes_effect_at_its_next_start(cloud: Cloud) -> None:
    cloud.registry.set_consent("h-42", True, "ana", Channel.APP)
    device = Injector(cloud.broker, device="kitchen-1", household="h-42")
    before = send(device, review_allowed=True, consent_version=2)
    assert cloud.stored(before).household_id == "h-42"
    # The operator moves it (another process, as `earmark pipeline enroll` is), no restart.
    other = open_database(cloud.data, cloud.database)
    with other.writing():
        other.execute("UPDATE devices SET household_id = 'h-7' WHERE device_id = 'kitchen-1'")
    other.close()
    stale = send(device, review_allowed=True, consent_version=2)
    assert cloud.pipeline.wait_until(lambda: cloud.count("rejected", "identity_mismatch") >= 1)
    moved = send(Injector(cloud.broker, device="kitchen-1", household="h-7"), review_allowed=False, consent_version=1)
    assert cloud.stored(moved).household_id == "h-7"
    assert cloud.pipeline.store.get(stale) is None
    assert cloud.registry.sample(1.0) == 1  # `before` only
    device.close()


def test_keeping_nothing_writes_no_audio_and_a_wake_without_speech_keeps_none(cloud: Cloud) -> None:
    cloud.registry.set_consent("h-42", True, "ana", Channel.APP)
    device = Injector(cloud.broker)
    cloud.registry.set_keep_recordings("h-42", False, "ana")
    not_kept = send(device, review_allowed=True, consent_version=2)
    clip = cloud.stored(not_kept)
    assert (clip.audio_bytes, clip.transcript, clip.review_allowed) == (None, "", True)  # the record and its tag
    cloud.registry.set_keep_recordings("h-42", True, "ana")
    no_speech = uuid.uuid4()
    device.start(no_speech, review_allowed=True, consent_version=2)
    for sequence, pcm in enumerate(AUDIO):
        device.chunk(no_speech, sequence, pcm)
    device.end(no_speech, len(AUDIO), EndReason.NO_SPEECH)
    assert cloud.stored(no_speech).audio_bytes is None
    assert cloud.registry.db.execute("SELECT COUNT(*) FROM clip_audio").fetchone()[0] == 0
    assert cloud.registry.sample(1.0) == 0
    assert cloud.registry.verdict(str(not_kept)) == cloud.registry.verdict(str(no_speech)) == "no_audio"
    device.close()


def test_retention_counts_from_the_clouds_receipt_not_the_devices_clock(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = Injector(cloud.broker)
    far_future = datetime(9999, 1, 1, tzinfo=UTC).isoformat()
    clip_id = send(device, review_allowed=False, consent_version=1, capture_started_at=far_future)
    clip = cloud.stored(clip_id)
    assert clip.capture_started_at.year == 9999 and abs(clip.received_at - datetime.now(UTC)) < timedelta(minutes=1)
    cloud.registry.set_retention("h-42", "3_months", "ana")
    assert apply_retention(cloud.registry) == 0  # received just now
    # 100 days pass (on the cloud's clock): it goes, whatever the device claimed.
    later = datetime.now(UTC) + timedelta(days=100)
    monkeypatch.setattr(registry_core, "_now", lambda _db: later)
    assert apply_retention(cloud.registry) == 1
    assert cloud.pipeline.store.get(clip_id) is None
    device.close()


def test_opting_out_removes_reviewer_corrections(cloud: Cloud) -> None:
    cloud.registry.set_consent("h-42", True, "ana", Channel.APP)
    device = Injector(cloud.broker)
    cloud.stored(send(device, review_allowed=True, consent_version=2))
    assert cloud.registry.sample(1.0) == 1
    reviewer = cloud.registry.add_reviewer("rita", "hash")
    pseudonym = cloud.registry.next_assignment(reviewer)
    assert pseudonym is not None
    cloud.registry.submit(reviewer, pseudonym, "turn on the kitchen lights")
    cloud.registry.set_consent("h-42", False, "ana", Channel.APP)
    rows = cloud.registry.db.execute("SELECT corrected FROM assignments WHERE household_id = 'h-42'").fetchall()
    assert rows == [(None,)]
    device.close()


def retained_payload(broker: Broker, household: str) -> bytes | None:
    got: list[bytes] = []
    done = threading.Event()
    peer = client(broker, f"watcher-{uuid.uuid4()}")
    peer.on_message = lambda _c, _u, m: (got.append(bytes(m.payload)), done.set())
    peer.subscribe(topics.consent(household), qos=1)
    done.wait(1.0)  # a retained message arrives right after subscribing, or not at all
    peer.loop_stop()
    peer.disconnect()
    return got[0] if got else None


def test_consent_is_republished_after_the_broker_forgets_it(cloud: Cloud) -> None:
    publisher = ConsentPublisher(cloud.registry, MqttSettings(port=cloud.broker.port, reconnect_max_seconds=1))
    publisher.start()
    try:
        cloud.registry.set_consent("h-42", True, "ana", Channel.APP)
        publisher.notify()
        assert wait_until(lambda: retained_payload(cloud.broker, "h-42") is not None)
        cloud.broker.kill()  # the test broker keeps no persistence: its retained messages are gone
        cloud.broker.start()
        key = load_public_key(cloud.data / "keys" / "consent-signing.pub")
        # A device that was away comes back and learns the current state again.
        device = ConsentCache(cloud.data / "device-consent.json", "h-42", key)
        assert wait_until(
            lambda: (payload := retained_payload(cloud.broker, "h-42")) is not None and device.update(payload)
        )
        assert device.current() == (True, 2)
        assert publisher.republished >= 2  # every household, at each connect
    finally:
        publisher.stop()


def test_a_spoofed_consent_message_can_neither_flip_nor_pin_a_device(cloud: Cloud, tmp_path: Path) -> None:
    key = load_public_key(cloud.data / "keys" / "consent-signing.pub")
    device = ConsentCache(tmp_path / "consent.json", "h-42", key)
    publisher = ConsentPublisher(cloud.registry, MqttSettings(port=cloud.broker.port))
    publisher.start()
    try:
        assert wait_until(lambda: (p := retained_payload(cloud.broker, "h-42")) is not None and device.update(p))
        assert device.current() == (False, 1)
        # Anyone on the anonymous broker publishes "review allowed, version 10^9", retained.
        attacker = client(cloud.broker, "attacker")
        forged = ConsentState(
            household_id="h-42", review_allowed=True, consent_version=10**9, changed_at=datetime.now(UTC)
        )
        attacker.publish(topics.consent("h-42"), encode_json(forged), qos=1, retain=True).wait_for_publish(5)
        assert device.update(retained_payload(cloud.broker, "h-42") or b"") is False
        # ... or signs it with a key of its own.
        other = tmp_path / "attacker-keys"
        create_key(other)
        attacker.publish(
            topics.consent("h-42"), ConsentSigner.load(other).sign(forged), qos=1, retain=True
        ).wait_for_publish(5)
        assert device.update(retained_payload(cloud.broker, "h-42") or b"") is False
        # ... or replays a genuine, signed state of another household.
        genuine_h7 = {h: payload for h, _v, payload in cloud.registry.consent_page("")}["h-7"]
        assert device.update(genuine_h7) is False
        assert device.current() == (False, 1) and set(device.ignored) >= {"unsigned", "unknown_key", "other_household"}
        attacker.loop_stop()
        attacker.disconnect()
        # A real change still arrives: the device was not pinned.
        cloud.registry.set_consent("h-42", True, "ana", Channel.APP)
        publisher.notify()
        assert wait_until(lambda: (p := retained_payload(cloud.broker, "h-42")) is not None and device.update(p))
        assert device.current() == (True, 2)
        genuine_v2 = retained_payload(cloud.broker, "h-42")
        assert genuine_v2 is not None
        cloud.registry.set_consent("h-42", False, "ana", Channel.APP)
        publisher.notify()
        assert wait_until(lambda: device.update(retained_payload(cloud.broker, "h-42") or b""))
        assert device.current() == (False, 3)
        # Replaying the older genuine state does not roll it back.
        assert device.update(genuine_v2) is False and device.ignored["replayed_older"] == 1
        assert device.current() == (False, 3)
        # The cache file is the signed envelope, private to the device's user.
        assert oct(os.stat(tmp_path / "consent.json").st_mode & 0o777) == "0o600"
    finally:
        publisher.stop()
