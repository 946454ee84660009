"""Device identity and broker ACLs against a real mosquitto with TLS and passwords."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from contract import topics
from contract.mqtt import MqttSettings, build_client
from hardware.broker_config import (
    CONSENT_USER,
    PIPELINE_USER,
    DeviceEntry,
    Identity,
    acl_text,
    make_tls,
    mosquitto_conf,
    new_identity,
    write_password_file,
)
from tests.broker import Broker

DEVICES = [DeviceEntry("kitchen-1", "h-42"), DeviceEntry("hall-2", "h-7")]
NOT_AUTHORIZED = 135


class Peer:
    """A connected MQTT 5 client that records what it receives and how publishes end."""

    def __init__(self, port: int, ca: Path, identity: Identity) -> None:
        settings = MqttSettings(port=port, username=identity.username, password=SecretStr(identity.password),
                                tls=True, ca_file=ca)  # fmt: skip
        self.client = build_client(settings, identity.username)
        self.connack: Any = None
        self.received: list[tuple[str, bytes]] = []
        self.puback: dict[int, int] = {}
        self.suback: list[int] = []
        self._event = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, m: self.received.append((m.topic, bytes(m.payload)))
        self.client.on_publish = lambda _c, _u, mid, rc, _p: self.puback.__setitem__(mid, rc.value)
        self.client.on_subscribe = lambda _c, _u, _mid, codes, _p: self.suback.extend(c.value for c in codes)
        self.client.connect("localhost", port)
        self.client.loop_start()
        self._event.wait(10)

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason_code: Any, _p: Any) -> None:
        self.connack = reason_code
        self._event.set()

    def publish(self, topic: str, payload: bytes = b"{}") -> int:
        info = self.client.publish(topic, payload, qos=1)
        deadline = time.monotonic() + 5
        while info.mid not in self.puback and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.puback[info.mid]

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)
        deadline = time.monotonic() + 5
        before = len(self.suback)
        while len(self.suback) == before and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, dict[str, Identity]]]:
    out = tmp_path_factory.mktemp("broker")
    identities = {name: new_identity(name) for name in (PIPELINE_USER, CONSENT_USER, "kitchen-1", "hall-2")}
    write_password_file(out / "passwords", list(identities.values()))
    (out / "acl").write_text(acl_text(DEVICES))
    tls = make_tls(out)
    broker = Broker(out, config_text=mosquitto_conf(0, out / "passwords", out / "acl", tls, bind="127.0.0.1"))
    broker.config.write_text(broker.config.read_text().replace("listener 0 ", f"listener {broker.port} "))
    broker.start()
    yield broker.port, tls[0], identities
    broker.stop()


def test_a_wrong_password_is_refused(secured: tuple[int, Path, dict[str, Identity]]) -> None:
    port, ca, identities = secured
    peer = Peer(port, ca, Identity("kitchen-1", "not-the-password"))
    assert peer.connack is not None and peer.connack.is_failure
    assert "authorized" in str(peer.connack).lower() or "password" in str(peer.connack).lower()
    peer.close()
    good = Peer(port, ca, identities["kitchen-1"])
    assert not good.connack.is_failure
    good.close()


def test_a_device_speaks_only_for_itself(secured: tuple[int, Path, dict[str, Identity]]) -> None:
    port, ca, identities = secured
    a = Peer(port, ca, identities["kitchen-1"])
    own = topics.utterance("kitchen-1", __import__("uuid").uuid4(), topics.UtterancePart.START)
    other = topics.utterance("hall-2", __import__("uuid").uuid4(), topics.UtterancePart.START)
    assert a.publish(own) in (0, 16)  # success / no matching subscribers
    assert a.publish(other) == NOT_AUTHORIZED  # cannot publish as B
    assert a.publish(topics.consent("h-42")) == NOT_AUTHORIZED  # cannot change any consent
    assert a.publish(topics.results("kitchen-1")) == NOT_AUTHORIZED  # cannot forge its own results
    a.close()


def test_a_device_reads_only_its_results_and_its_household_consent(
    secured: tuple[int, Path, dict[str, Identity]],
) -> None:
    port, ca, identities = secured
    a = Peer(port, ca, identities["kitchen-1"])
    b = Peer(port, ca, identities["hall-2"])
    a.subscribe(topics.results("hall-2"))  # B's results
    a.subscribe(topics.consent("h-7"))  # B's household
    a.subscribe(topics.results("kitchen-1"))
    a.subscribe(topics.consent("h-42"))
    b.subscribe(topics.results("hall-2"))
    pipeline = Peer(port, ca, identities[PIPELINE_USER])
    consent = Peer(port, ca, identities[CONSENT_USER])
    assert pipeline.publish(topics.results("hall-2"), b"for B") in (0, 16)
    assert pipeline.publish(topics.results("kitchen-1"), b"for A") in (0, 16)
    assert consent.publish(topics.consent("h-7"), b"h-7 consent") in (0, 16)
    assert consent.publish(topics.consent("h-42"), b"h-42 consent") in (0, 16)
    assert pipeline.publish(topics.consent("h-42"), b"forged") == NOT_AUTHORIZED  # only the consent service
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and len(a.received) < 2:
        time.sleep(0.02)
    time.sleep(0.3)
    assert sorted(a.received) == sorted(
        [(topics.results("kitchen-1"), b"for A"), (topics.consent("h-42"), b"h-42 consent")]
    )
    assert (topics.results("hall-2"), b"for B") in b.received
    for peer in (a, b, pipeline, consent):
        peer.close()


def test_provision_command_writes_a_working_config(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    devices = tmp_path / "devices.toml"
    devices.write_text('[[device]]\ndevice_id = "kitchen-1"\nhousehold_id = "h-42"\n')
    command = [sys.executable, "-m", "hardware.broker_config", "--devices", str(devices), "--out", str(tmp_path / "b")]
    done = subprocess.run([*command, "--tls"], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "b"
    assert "allow_anonymous false" in (out / "mosquitto.conf").read_text()
    assert "user kitchen-1" in (out / "acl").read_text()
    assert oct((out / "credentials.toml").stat().st_mode)[-3:] == "600"
    assert (out / "ca.crt").exists() and (out / "server.key").stat().st_mode & 0o077 == 0
