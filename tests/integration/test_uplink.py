"""The device uplink while the broker is away: delivered whole later, or abandoned explicitly."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from contract.mqtt import MqttSettings
from firmware.consent_cache import ConsentCache
from firmware.events import FrontEndEvent, UtteranceReady
from firmware.frontend import FrontEnd
from firmware.outbox import UplinkSettings
from firmware.uplink import DeviceIdentity, Uplink
from firmware.wake import WakeWordDetector
from pipeline.settings import IngestSettings, PipelineSettings
from tests.broker import Broker
from tests.conftest import Pcm, feed
from tests.pipeline_harness import RunningPipeline

MakeFrontEnd = Callable[..., tuple[FrontEnd, list[FrontEndEvent]]]


@pytest.fixture
def down_broker(tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(tmp_path)  # port reserved, not started: the broker is unreachable
    yield broker
    broker.stop()


def speak_while_offline(
    tmp_path: Path, broker: Broker, detector: WakeWordDetector, make_frontend: MakeFrontEnd, pcm: Pcm, **settings: Any
) -> tuple[Uplink, UtteranceReady]:
    uplink = Uplink(
        DeviceIdentity(device_id="kitchen-1", household_id="h-42"),
        MqttSettings(port=broker.port, reconnect_max_seconds=2),
        UplinkSettings(**settings),
        ConsentCache(tmp_path / "consent.json", "h-42", None),
    )
    uplink.start()
    frontend, events = make_frontend(detector)
    frontend.subscribe(uplink.handle)
    feed(frontend, pcm)
    frontend.end_of_input()
    [ready] = [e for e in events if isinstance(e, UtteranceReady)]
    assert not uplink.connected.is_set()
    return uplink, ready


def bring_cloud_up(tmp_path: Path, broker: Broker) -> RunningPipeline:
    broker.start()
    settings = PipelineSettings(
        data_dir=tmp_path / "cloud", mqtt=MqttSettings(port=broker.port), ingest=IngestSettings(gap_wait_seconds=0.5)
    )
    # recognition off: this is about delivery
    pipeline = RunningPipeline(settings, model=None, enrolled=[("kitchen-1", "h-42")])
    return pipeline


def test_an_utterance_spoken_while_offline_is_delivered_whole_after_reconnect(
    tmp_path: Path, down_broker: Broker, alexa_detector: WakeWordDetector, make_frontend: MakeFrontEnd, sample_pcm: Pcm
) -> None:
    uplink, ready = speak_while_offline(tmp_path, down_broker, alexa_detector, make_frontend, sample_pcm)
    pipeline = bring_cloud_up(tmp_path, down_broker)
    try:
        assert uplink.wait_drained(30), "outbox not delivered after reconnect"
        assert pipeline.wait_until(lambda: pipeline.store.get(ready.utterance_id) is not None)
        clip = pipeline.store.get(ready.utterance_id)
        assert clip is not None and clip.status == "complete"
        assert clip.duration_seconds == pytest.approx(ready.duration_seconds, abs=0.001)
        assert (clip.review_allowed, clip.consent_version) == (False, 0)  # never saw consent: no review
    finally:
        uplink.stop(drain_seconds=1)
        pipeline.stop()


def test_an_utterance_that_overflows_the_outbox_is_abandoned_explicitly(
    tmp_path: Path, down_broker: Broker, alexa_detector: WakeWordDetector, make_frontend: MakeFrontEnd, sample_pcm: Pcm
) -> None:
    uplink, ready = speak_while_offline(
        tmp_path, down_broker, alexa_detector, make_frontend, sample_pcm, outbox_audio_seconds=1.0
    )
    assert uplink.stats.abandoned == 1
    pipeline = bring_cloud_up(tmp_path, down_broker)
    try:
        assert uplink.wait_drained(30)
        assert pipeline.wait_until(lambda: pipeline.store.get(ready.utterance_id) is not None)
        clip = pipeline.store.get(ready.utterance_id)
        assert clip is not None and (clip.status, clip.end_reason) == ("abandoned", "abandoned")
        assert clip.review_allowed is False
        assert pipeline.store.get(uuid.uuid4()) is None
    finally:
        uplink.stop(drain_seconds=1)
        pipeline.stop()
