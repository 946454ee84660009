"""Device identity, broker ACLs and broker hardening against a real mosquitto with TLS and passwords."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from contract import topics
from contract.consent_signature import load_public_key
from contract.errors import ContractError
from contract.limits import MAX_MESSAGE_BYTES, MAX_PACKET_BYTES
from contract.messages import ConsentState
from contract.mqtt import MqttSettings, build_client
from firmware.consent_cache import ConsentCache
from hardware.broker_config import (
    CONSENT_USER,
    PIPELINE_USER,
    DeviceEntry,
    Identity,
    acl_text,
    make_tls,
    mosquitto_conf,
    new_identity,
    password_line,
    pipeline_users,
    write_password_file,
    write_private,
)
from review_opt_out.signing import create_key
from tests.broker import Broker, free_port, listening_addresses, server_tcp_nodelay
from tests.conftest import REPO, wait_until

DEVICES = [DeviceEntry("kitchen-1", "h-42"), DeviceEntry("hall-2", "h-7")]
NOT_AUTHORIZED = 135
PACKET_TOO_LARGE = 149


class Peer:
    """A connected MQTT 5 client that records what it receives and how publishes end.

    With `ca` it uses TLS; without `identity` it connects anonymously.
    """

    def __init__(self, port: int, ca: Path | None, identity: Identity | None, client_id: str | None = None) -> None:
        settings = MqttSettings(
            port=port,
            username=identity.username if identity else None,
            password=SecretStr(identity.password) if identity else None,
            tls=ca is not None,
            ca_file=ca,
        )
        self.client = build_client(settings, client_id or (identity.username if identity else f"peer-{uuid.uuid4()}"))
        self.connack: Any = None
        self.received: list[tuple[str, bytes]] = []
        self.puback: dict[int, int] = {}
        self.suback: list[int] = []
        self.disconnects: list[int] = []
        self._event = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, m: self.received.append((m.topic, bytes(m.payload)))
        self.client.on_publish = lambda _c, _u, mid, rc, _p: self.puback.__setitem__(mid, rc.value)
        self.client.on_subscribe = lambda _c, _u, _mid, codes, _p: self.suback.extend(c.value for c in codes)
        self.client.on_disconnect = lambda _c, _u, _f, rc, _p: self.disconnects.append(rc.value)
        self.client.connect("localhost" if ca else "127.0.0.1", port)
        self.client.loop_start()
        self._event.wait(10)

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason_code: Any, _p: Any) -> None:
        self.connack = reason_code
        self._event.set()

    def publish(self, topic: str, payload: bytes = b"{}", retain: bool = False) -> int | None:
        """The PUBACK reason code, or None when none came (the broker hung up)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        wait_until(lambda: info.mid in self.puback or bool(self.disconnects), 5)
        return self.puback.get(info.mid)

    def subscribe(self, topic: str) -> None:
        before = len(self.suback)
        self.client.subscribe(topic, qos=1)
        wait_until(lambda: len(self.suback) > before, 5)

    def local_port(self) -> int:
        sock = self.client.socket()
        assert isinstance(sock, socket.socket)
        return int(sock.getsockname()[1])

    def payloads(self) -> list[bytes]:
        return [payload for _topic, payload in self.received]

    def close(self) -> None:
        self.client.disconnect()  # wakes the network thread, so loop_stop need not wait out its select
        self.client.loop_stop()


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, dict[str, Identity]]]:
    out = tmp_path_factory.mktemp("broker")
    names = (*pipeline_users(2), CONSENT_USER, "kitchen-1", "hall-2")
    identities = {name: new_identity(name) for name in names}
    write_password_file(out / "passwords", list(identities.values()))
    write_private(out / "acl", acl_text(DEVICES, workers=2))
    tls = make_tls(out)
    port = free_port()
    broker = Broker(out, config_text=mosquitto_conf(port, out, tls, bind="127.0.0.1"), port=port)
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
    own = topics.utterance("kitchen-1", uuid.uuid4(), topics.UtterancePart.START)
    other = topics.utterance("hall-2", uuid.uuid4(), topics.UtterancePart.START)
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
    wait_until(lambda: len(a.received) >= 2, 3)
    time.sleep(0.3)  # room for a message A must not get to arrive
    assert sorted(a.received) == sorted(
        [(topics.results("kitchen-1"), b"for A"), (topics.consent("h-42"), b"h-42 consent")]
    )
    assert (topics.results("hall-2"), b"for B") in b.received
    for peer in (a, b, pipeline, consent):
        peer.close()


def check_size_limits(new_sender: Callable[[], Peer], receiver: Peer, topic: str) -> None:
    """The largest legal payload passes; anything larger is never delivered and its sender is hung up on."""
    sender = new_sender()
    assert sender.publish(topic, b"a" * MAX_MESSAGE_BYTES) == 0
    sender.close()
    # Over message_size_limit mosquitto 2.0.11 answers with a PUBACK carrying 0x95
    # "Packet too large", a code MQTT 5 does not allow in a PUBACK, so paho drops the
    # connection as a protocol error (130). Over max_packet_size it sends DISCONNECT 0x95
    # and closes the socket while the client may still be writing the rest of the
    # packet: on a busy machine the client then sees the reset (128) before it reads
    # that DISCONNECT. Either way it was hung up on, and nothing was delivered.
    for size, hang_ups in ((MAX_MESSAGE_BYTES + 1, {130}), (MAX_PACKET_BYTES, {PACKET_TOO_LARGE, 128})):
        sender = new_sender()
        assert sender.publish(topic, b"b" * size) is None
        assert len(sender.disconnects) >= 1 and sender.disconnects[0] in hang_ups
        sender.close()  # before paho reconnects and sends the same message again
    sender = new_sender()
    assert sender.publish(topic, b"after") == 0
    # QoS 1 on one subscription: once "after" is in, a refused message would be too.
    assert wait_until(lambda: b"after" in receiver.payloads(), 5)
    assert [len(p) for p in receiver.payloads()] == [MAX_MESSAGE_BYTES, len(b"after")]
    sender.close()


def test_an_oversized_message_is_refused_and_never_delivered(secured: tuple[int, Path, dict[str, Identity]]) -> None:
    port, ca, identities = secured
    pipeline = Peer(port, ca, identities[PIPELINE_USER])
    pipeline.subscribe(f"{topics.ROOT}/devices/+/utterances/#")
    topic = topics.utterance("kitchen-1", uuid.uuid4(), topics.UtterancePart.START)
    check_size_limits(lambda: Peer(port, ca, identities["kitchen-1"]), pipeline, topic)
    pipeline.close()


def test_a_device_cannot_take_over_the_pipeline_session(secured: tuple[int, Path, dict[str, Identity]]) -> None:
    port, ca, identities = secured
    pipeline = Peer(port, ca, identities[PIPELINE_USER])  # client id "earmark-pipeline"
    pipeline.subscribe(f"{topics.ROOT}/devices/+/utterances/#")
    intruder = Peer(port, ca, identities["kitchen-1"], client_id=PIPELINE_USER)
    assert not intruder.connack.is_failure  # connected, but under its own name
    assert intruder.publish(topics.utterance("kitchen-1", uuid.uuid4(), topics.UtterancePart.START), b"hi") == 0
    # A taken-over pipeline is disconnected first and would lose its subscription.
    assert wait_until(lambda: b"hi" in pipeline.payloads(), 5)
    assert pipeline.disconnects == []
    for peer in (intruder, pipeline):
        peer.close()


def test_the_broker_sends_without_nagle_delay(secured: tuple[int, Path, dict[str, Identity]]) -> None:
    port, ca, identities = secured
    device = Peer(port, ca, identities["kitchen-1"])
    assert server_tcp_nodelay(port, device.local_port())
    device.close()


def test_password_lines_are_those_mosquitto_passwd_writes(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    # A throwaway password: the one place a password may sit on a command line is this test.
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(reference), "kitchen-1", "pässword 1"], check=True)
    line = reference.read_text()
    salt = base64.b64decode(line.split("$")[3])
    assert password_line("kitchen-1", "pässword 1", salt) == line
    assert password_line("kitchen-1", "pässword 1") != line  # a fresh salt every time
    with pytest.raises(ContractError, match="username"):
        password_line("kitchen-1:x", "p")


def provision(
    out: Path, *args: str, devices: list[DeviceEntry] = DEVICES, as_root_user: str | None = "root"
) -> subprocess.CompletedProcess[str]:
    """`earmark provision` (for two devices unless told), run under the usual umask 022.

    As root, the broker's files go to `as_root_user`: root for the tests' own brokers
    (whose directories mosquitto's user cannot reach), None for the default, mosquitto.
    """
    listed = out.parent / "devices.toml"
    listed.write_text(
        "".join(f'[[device]]\ndevice_id = "{d.device_id}"\nhousehold_id = "{d.household_id}"\n' for d in devices)
    )
    command = [sys.executable, "-m", "hardware.broker_config", "--devices", str(listed), "--out", str(out), *args]
    if os.geteuid() == 0 and as_root_user is not None:
        command += ["--broker-user", as_root_user]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False, umask=0o022)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_provision_command_writes_a_working_config(tmp_path: Path) -> None:
    out = tmp_path / "b"
    done = provision(out, "--tls")
    assert done.returncode == 0, done.stderr
    conf = (out / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf and "listener 8883 0.0.0.0\n" in conf  # TLS: reachable by devices
    assert "user kitchen-1" in (out / "acl").read_text()
    assert (out / "ca.crt").exists()
    assert mode(out) == 0o700
    for name in ("passwords", "acl", "mosquitto.conf", "credentials.toml", "ca.key", "server.key"):
        assert mode(out / name) == 0o600, name


def test_a_plaintext_broker_listens_on_loopback_unless_told(tmp_path: Path) -> None:
    done = provision(tmp_path / "public", "--bind", "0.0.0.0", "--port", "1883")  # noqa: S104 - written, never started
    assert done.returncode == 0, done.stderr
    assert "listener 1883 0.0.0.0\n" in (tmp_path / "public" / "mosquitto.conf").read_text()
    out, port = tmp_path / "b", free_port()
    assert provision(out, "--port", str(port)).returncode == 0
    broker = Broker(out, config_text=(out / "mosquitto.conf").read_text(), port=port)
    broker.start()
    try:
        assert listening_addresses(port) == {"127.0.0.1"}
    finally:
        broker.stop()


def test_the_provisioned_broker_keeps_retained_consent_across_a_restart(tmp_path: Path) -> None:
    out, port = tmp_path / "b", free_port()
    assert provision(out, "--port", str(port)).returncode == 0
    assert mode(out) == 0o700
    for name in ("passwords", "acl", "mosquitto.conf", "credentials.toml"):
        assert mode(out / name) == 0o600, name
    passwords = tomllib.loads((out / "credentials.toml").read_text())
    identity = {name: Identity(name, password) for name, password in passwords.items()}
    broker = Broker(out, config_text=(out / "mosquitto.conf").read_text(), port=port)
    broker.start()
    consent = Peer(port, None, identity[CONSENT_USER])
    assert consent.publish(topics.consent("h-42"), b"review off", retain=True) in (0, 16)
    consent.close()
    broker.stop()
    assert mode(out / "state" / "mosquitto.db") == 0o600  # queued audio and consent at rest
    broker.start()
    try:
        device = Peer(port, None, identity["kitchen-1"])
        device.subscribe(topics.consent("h-42"))
        assert wait_until(lambda: device.received == [(topics.consent("h-42"), b"review off")], 5)
        device.close()
    finally:
        broker.stop()


def test_earmark_up_broker_is_private_limited_and_persistent(tmp_path: Path) -> None:
    from earmark.up import broker

    data = tmp_path / "data"
    old_umask = os.umask(0o022)
    try:
        with broker(data) as port:
            receiver = Peer(port, None, None)
            receiver.subscribe("t/#")
            assert server_tcp_nodelay(port, receiver.local_port())
            check_size_limits(lambda: Peer(port, None, None), receiver, "t/size")
            assert receiver.publish("t/kept", b"retained", retain=True) == 0
            receiver.close()
    finally:
        os.umask(old_umask)
    assert mode(data) == mode(data / "broker") == 0o700
    for name in ("mosquitto.conf", "mosquitto.db", "mosquitto.log"):
        assert mode(data / "broker" / name) == 0o600, name
    with broker(data) as port:
        again = Peer(port, None, None)
        again.subscribe("t/kept")
        assert wait_until(lambda: again.payloads() == [b"retained"], 5)
        again.close()


@pytest.mark.parametrize("persistence", [False, True])
def test_the_test_broker_has_the_same_limits_and_opt_in_persistence(tmp_path: Path, persistence: bool) -> None:
    broker = Broker(tmp_path, persistence=persistence)
    broker.start()
    try:
        receiver = Peer(broker.port, None, None)
        receiver.subscribe("t/#")
        assert server_tcp_nodelay(broker.port, receiver.local_port())
        check_size_limits(lambda: Peer(broker.port, None, None), receiver, "t/size")
        assert receiver.publish("t/kept", b"retained", retain=True) == 0
        receiver.close()
        broker.stop()
        broker.start()
        again = Peer(broker.port, None, None)
        again.subscribe("t/kept")  # a retained message follows the SUBACK at once
        # Off by default: an outage test's broker comes back empty.
        assert wait_until(lambda: again.payloads() == [b"retained"], 5 if persistence else 1) is persistence
        again.close()
    finally:
        broker.stop()


def test_a_spoofed_consent_on_the_provisioned_broker_is_not_believed(
    tmp_path: Path, secured: tuple[int, Path, dict[str, Identity]]
) -> None:
    port, ca, identities = secured
    device = Peer(port, ca, identities["kitchen-1"])
    device.subscribe(topics.consent("h-42"))
    # A device cannot write consent, nor pretend a pipeline listens.
    assert device.publish(topics.consent("h-42"), b"{}") == NOT_AUTHORIZED
    assert device.publish(topics.pipeline_status("earmark-pipeline"), b"{}") == NOT_AUTHORIZED
    # Whoever holds the consent service's *broker* password still cannot sign.
    leaked = Peer(port, ca, identities[CONSENT_USER])
    forged = ConsentState(household_id="h-42", review_allowed=True, consent_version=10**9, changed_at=datetime.now(UTC))
    assert leaked.publish(topics.consent("h-42"), forged.model_dump_json().encode()) in (0, 16)
    assert wait_until(lambda: any(b"1000000000" in p for _t, p in device.received), 5)
    public_key, _ = create_key(tmp_path / "cloud")
    cache = ConsentCache(tmp_path / "consent.json", "h-42", load_public_key(public_key))
    assert not any(cache.update(p) for _t, p in device.received)
    assert cache.current() == (False, 0) and cache.ignored["unsigned"] >= 1
    for peer in (device, leaked):
        peer.close()


def connects(port: int, ca: Path | None, identity: Identity) -> bool:
    peer = Peer(port, ca, identity)
    ok = peer.connack is not None and not peer.connack.is_failure
    peer.close()
    return ok


def test_adding_a_device_keeps_the_ca_and_everyone_elses_password_and_removing_revokes_only_it(
    tmp_path: Path,
) -> None:
    out, port = tmp_path / "b", free_port()
    assert provision(out, "--tls", "--port", str(port), "--bind", "127.0.0.1").returncode == 0
    first = tomllib.loads((out / "credentials.toml").read_text())
    ca_before, cert_before = (out / "ca.crt").read_bytes(), (out / "server.crt").read_bytes()
    broker = Broker(out, config_text=(out / "mosquitto.conf").read_text(), port=port)
    broker.start()
    try:
        ca = out / "ca.crt"
        old = [Identity(name, first[name]) for name in ("kitchen-1", "hall-2")]
        assert all(connects(port, ca, identity) for identity in old)

        third = DeviceEntry("porch-3", "h-42")
        added = provision(out, "--tls", "--port", str(port), "--bind", "127.0.0.1", devices=[*DEVICES, third])
        assert added.returncode == 0, added.stderr
        assert "added porch-3; kept 4 accounts" in added.stdout
        second = tomllib.loads((out / "credentials.toml").read_text())
        assert {k: second[k] for k in first} == first  # nobody's password changed
        assert (out / "ca.crt").read_bytes() == ca_before and (out / "server.crt").read_bytes() == cert_before
        broker.reload()
        porch = Identity("porch-3", second["porch-3"])
        assert wait_until(lambda: connects(port, ca, porch), 10)
        assert all(connects(port, ca, identity) for identity in old)  # the speakers already flashed

        removed = provision(out, "--tls", "--port", str(port), "--bind", "127.0.0.1", devices=[DEVICES[0], third])
        assert removed.returncode == 0 and "removed hall-2" in removed.stdout
        assert "hall-2" not in (out / "acl").read_text() and "hall-2" not in (out / "passwords").read_text()
        broker.reload()
        assert wait_until(lambda: not connects(port, ca, old[1]), 10)
        assert connects(port, ca, old[0]) and connects(port, ca, porch)
    finally:
        broker.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="the README's `sudo mosquitto` path needs root")
def test_the_readme_broker_command_works_as_root_and_a_directory_it_cannot_reach_is_named(tmp_path: Path) -> None:
    unreachable = provision(tmp_path / "b", "--tls", as_root_user=None)
    assert unreachable.returncode == 2 and unreachable.stderr.count("\n") == 1
    assert f"the broker's user mosquitto cannot reach {tmp_path / 'b'}" in unreachable.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["devices.toml"]  # no passwords left behind (issue 24)
    # Somewhere the broker's user can walk into, as /etc/earmark is.
    with tempfile.TemporaryDirectory(dir="/tmp") as home:
        Path(home).chmod(0o711)
        out, port = Path(home) / "broker", free_port()
        done = provision(out, "--tls", "--port", str(port), "--bind", "127.0.0.1", as_root_user=None)
        assert done.returncode == 0, done.stderr
        # The broker reads its files and writes only state/; it cannot replace root's CA or keys.
        assert (out.owner(), out.group(), mode(out)) == ("root", "mosquitto", 0o750)
        for name in ("passwords", "server.key", "acl", "mosquitto.conf"):
            assert ((out / name).owner(), (out / name).group(), mode(out / name)) == ("root", "mosquitto", 0o640)
        for name in ("ca.key", "credentials.toml"):
            assert ((out / name).owner(), mode(out / name)) == ("root", 0o600)
        assert (out / "state").owner() == "mosquitto"
        credentials = tomllib.loads((out / "credentials.toml").read_text())
        # Exactly the README's command (mosquitto then drops to its own user).
        log = Path(home) / "mosquitto.stderr"
        with log.open("wb") as stderr:
            mosquitto = subprocess.Popen(["mosquitto", "-c", str(out / "mosquitto.conf")], stderr=stderr)
        try:
            assert wait_until(lambda: mosquitto.poll() is not None or listening_addresses(port) != set(), 10)
            assert mosquitto.poll() is None, log.read_text()
            assert connects(port, out / "ca.crt", Identity("kitchen-1", credentials["kitchen-1"]))
        finally:
            mosquitto.terminate()
            mosquitto.wait(timeout=10)


def test_a_bad_id_writes_nothing_and_an_offline_ca_key_keeps_the_ca(tmp_path: Path) -> None:
    out = tmp_path / "b"
    assert provision(out, "--tls").returncode == 0
    before = {name: (out / name).read_bytes() for name in ("passwords", "acl", "credentials.toml")}
    bad = provision(out, "--tls", devices=[*DEVICES, DeviceEntry("porch-3", "h 42")])
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    # Nothing changed, so fixing the typo later still writes porch-3's password down.
    assert {name: (out / name).read_bytes() for name in before} == before
    fixed = provision(out, "--tls", devices=[*DEVICES, DeviceEntry("porch-3", "h-42")])
    assert fixed.returncode == 0 and "porch-3" in tomllib.loads((out / "credentials.toml").read_text())
    # The CA key taken offline: the CA every speaker trusts is kept, never silently replaced.
    ca = (out / "ca.crt").read_bytes()
    (out / "ca.key").unlink()
    assert provision(out, "--tls").returncode == 0 and (out / "ca.crt").read_bytes() == ca
    renamed = provision(out, "--tls", "--hostname", "broker.example.org")
    assert renamed.returncode == 2 and "needs the CA key" in renamed.stderr
    assert (out / "ca.crt").read_bytes() == ca


def tree(root: Path) -> dict[str, tuple[bytes | None, int]]:
    """Every path under root with its content (None for a directory) and mode."""
    return {
        str(path.relative_to(root)): (None if path.is_dir() else path.read_bytes(), mode(path))
        for path in sorted(root.rglob("*"))
    }


def test_provision_that_fails_anywhere_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "new" / "b"
    # openssl missing: it fails only after the accounts' files were made (in the staging directory).
    without_openssl = tmp_path / "empty-path"
    without_openssl.mkdir()
    listed = tmp_path / "new-devices.toml"
    listed.write_text('[[device]]\ndevice_id = "kitchen-1"\nhousehold_id = "h-42"\n')
    command = [sys.executable, "-m", "hardware.broker_config", "--devices", str(listed), "--out", str(out), "--tls"]
    if os.geteuid() == 0:
        command += ["--broker-user", "root"]
    failed = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, check=False, env={**os.environ, "PATH": str(without_openssl)}
    )
    assert failed.returncode == 2 and failed.stderr.count("\n") == 1 and "openssl" in failed.stderr, failed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty-path", "new-devices.toml"]  # not even new/

    # A broker user that does not exist (or, without root, cannot be handed files).
    nobody = provision(tmp_path / "c", "--broker-user", "no-such-user", as_root_user=None)
    assert nobody.returncode == 2 and nobody.stderr.count("\n") == 1
    assert ("no-such-user: no such user" if os.geteuid() == 0 else "needs root") in nobody.stderr
    assert not (tmp_path / "c").exists()

    # An --out that is a file.
    (tmp_path / "file").write_text("mine\n")
    not_dir = provision(tmp_path / "file")
    assert not_dir.returncode == 2 and "not a directory" in not_dir.stderr
    assert (tmp_path / "file").read_text() == "mine\n"

    # A working directory, then a run that adds a speaker and renames the broker without the
    # CA key: refused after the new account was planned, and every file is as it was.
    out = tmp_path / "b"
    assert provision(out, "--tls").returncode == 0
    (out / "ca.key").rename(tmp_path / "ca.key.offline")
    before = tree(out)
    refused = provision(
        out, "--tls", "--hostname", "broker.example.org", devices=[*DEVICES, DeviceEntry("porch-3", "h-42")]
    )
    assert refused.returncode == 2 and "needs the CA key" in refused.stderr
    assert tree(out) == before
    (tmp_path / "ca.key.offline").rename(out / "ca.key")
    renamed = provision(out, "--tls", "--hostname", "broker.example.org")
    assert renamed.returncode == 0, renamed.stderr
    assert (out / "server.hostname").read_text() == "broker.example.org"
    verified = subprocess.run(  # the new certificate is signed by the CA every speaker already trusts
        ["openssl", "verify", "-CAfile", str(out / "ca.crt"), str(out / "server.crt")], capture_output=True, check=False
    )
    assert verified.returncode == 0, verified.stderr
    assert not [p.name for p in out.iterdir() if p.name.startswith(".provision-")]  # the staging is gone
    for name in ("passwords", "acl", "mosquitto.conf", "credentials.toml", "ca.key", "server.key"):
        assert mode(out / name) == 0o600, name


def test_workers_share_starts_and_hear_only_their_own_audio(secured: tuple[int, Path, dict[str, Identity]]) -> None:
    port, ca, identities = secured
    # Each worker has a broker account of its own (the broker names a client by its user).
    assert pipeline_users(2) == [PIPELINE_USER, f"{PIPELINE_USER}-2"]
    workers = [Peer(port, ca, identities[user]) for user in pipeline_users(2)]
    for n, worker in enumerate(workers):
        worker.subscribe(topics.shared("earmark-pipeline", topics.utterance_start_filter()))
        worker.subscribe(topics.worker_utterance_filter(f"worker-{n}"))
    assert wait_until(lambda: all(len(w.suback) == 2 for w in workers), 5), [(w.connack, w.suback) for w in workers]
    assert all(code < 0x80 for w in workers for code in w.suback)  # the ACL allows the shared filter
    device = Peer(port, ca, identities["kitchen-1"])
    for _ in range(10):
        device.publish(topics.utterance("kitchen-1", uuid.uuid4(), topics.UtterancePart.START), b"start")
    addressed = topics.utterance("kitchen-1", uuid.uuid4(), topics.UtterancePart.AUDIO, "worker-1")
    device.publish(addressed, b"audio")
    assert wait_until(lambda: sum(w.payloads().count(b"start") for w in workers) == 10, 5)
    assert all(w.payloads().count(b"start") >= 1 for w in workers)  # shared: each start to one of them
    assert wait_until(lambda: b"audio" in workers[1].payloads(), 5) and b"audio" not in workers[0].payloads()
    for peer in (device, *workers):
        peer.close()
