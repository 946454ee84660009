"""`earmark-device doctor` against a real ALSA capture device and a real mosquitto."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from contract import topics
from tests.broker import Broker, free_port
from tests.conftest import run_cli
from tests.test_cli import alsa_home


def write_config(path: Path, port: int) -> Path:
    path.write_text(
        f'device = "fakemic"\n[identity]\ndevice_id = "kitchen-1"\nhousehold_id = "h-42"\n[mqtt]\nport = {port}\n'
    )
    return path


def test_doctor_passes_when_everything_is_there(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    broker.start()
    try:
        publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        state = {"type": "consent_state", "household_id": "h-42", "review_allowed": False, "consent_version": 1,
                 "changed_at": "2026-11-27T00:00:00+00:00"}  # fmt: skip
        publisher.publish(topics.consent("h-42"), json.dumps(state), qos=1, retain=True).wait_for_publish(5)
        publisher.loop_stop()
        publisher.disconnect()
        env = alsa_home(tmp_path, np.zeros(16000, dtype=np.int16))
        done = run_cli("doctor", "--config", str(write_config(tmp_path / "d.toml", broker.port)), env=env)
    finally:
        broker.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for name in ("microphone", "wake word models", "broker reachable", "TLS", "credentials", "consent message"):
        assert any(line.startswith(f"ok   {name}:") for line in lines), done.stdout


def test_doctor_names_each_failure_and_its_fix(tmp_path: Path) -> None:
    config = write_config(tmp_path / "d.toml", free_port())  # nothing listens there
    config.write_text(config.read_text().replace('device = "fakemic"', 'device = "usb-headset"'))
    done = run_cli("doctor", "--config", str(config), env=alsa_home(tmp_path, np.zeros(1600, dtype=np.int16)))
    assert done.returncode == 1
    assert "FAIL microphone: mic 'usb-headset': no input device matches" in done.stdout
    assert "FAIL broker reachable:" in done.stdout
    assert done.stdout.count("fix:") == 2
