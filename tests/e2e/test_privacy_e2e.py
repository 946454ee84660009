"""The whole privacy promise across every part: app -> registry -> broker -> device -> pipeline -> pool.

A household starts with review off; its device learns that from the retained consent
message and tags its clips accordingly. The member opts in: the device's next clip is
tagged with the new version and may be sampled. The member opts out: the pool is
emptied at once and the device's following clip is tagged "no review" again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from contract.mqtt import MqttSettings
from firmware.consent_cache import ConsentCache
from firmware.events import FrontEndEvent, UtteranceReady
from firmware.frontend import FrontEnd
from firmware.outbox import UplinkSettings
from firmware.uplink import DeviceIdentity, Uplink
from firmware.wake import WakeWordDetector
from pipeline.settings import IngestSettings, PipelineSettings
from review_opt_out.publisher import ConsentPublisher
from review_opt_out.registry import Channel, Registry
from review_opt_out.signing import create_key
from tests.broker import Broker
from tests.conftest import Pcm, feed, wait_until
from tests.pipeline_harness import RunningPipeline

MakeFrontEnd = Callable[..., tuple[FrontEnd, list[FrontEndEvent]]]


def test_consent_flows_from_the_app_to_the_device_and_the_pool(
    tmp_path: Path,
    alexa_detector: WakeWordDetector,
    make_frontend: MakeFrontEnd,
    sample_pcm: Pcm,
    database: str | None,
) -> None:
    broker = Broker(tmp_path)
    broker.start()
    data = tmp_path / "cloud"
    pipeline = RunningPipeline(
        PipelineSettings(
            data_dir=data, database=database, mqtt=MqttSettings(port=broker.port), ingest=IngestSettings()
        ),
        model=None,
        enrolled=[("kitchen-1", "parks")],
    )
    public_key, _ = create_key(data)
    registry = Registry(data, database=database)
    registry.create_household("parks", "The Parks")
    publisher = ConsentPublisher(registry, MqttSettings(port=broker.port))
    publisher.start()
    consent = ConsentCache.open(tmp_path / "device", "parks", public_key)
    uplink = Uplink(
        DeviceIdentity(device_id="kitchen-1", household_id="parks"),
        MqttSettings(port=broker.port),
        UplinkSettings(),
        consent,
    )
    uplink.start()
    frontend, events = make_frontend(alexa_detector)
    frontend.subscribe(uplink.handle)

    def speak() -> tuple[bool, int]:
        before = len([e for e in events if isinstance(e, UtteranceReady)])
        feed(frontend, sample_pcm)
        frontend.end_of_input()
        ready = [e for e in events if isinstance(e, UtteranceReady)][before]
        assert wait_until(lambda: pipeline.store.get(ready.utterance_id) is not None)
        clip = pipeline.store.get(ready.utterance_id)
        assert clip is not None
        return clip.review_allowed, clip.consent_version

    try:
        assert wait_until(lambda: consent.current() == (False, 1)), "the device never saw the household's consent"
        assert speak() == (False, 1)

        registry.set_consent("parks", True, "ana", Channel.APP)  # the one tap
        publisher.notify()
        assert wait_until(lambda: consent.current() == (True, 2))
        assert speak() == (True, 2)
        assert registry.sample(1.0) == 1  # only the clip captured under the new consent
        assert registry.pool_households() == {"parks": 1}

        registry.set_consent("parks", False, "ana", Channel.VOICE)
        assert registry.pool_households() == {}  # at once, before any message went out
        publisher.notify()
        assert wait_until(lambda: consent.current() == (False, 3))
        assert speak() == (False, 3)
        registry.set_consent("parks", True, "ana", Channel.APP)
        assert registry.sample(1.0) == 0  # opting back in never brings old clips back
    finally:
        uplink.stop(drain_seconds=2)
        publisher.stop()
        pipeline.stop()
        registry.close()
        broker.stop()
