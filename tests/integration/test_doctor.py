"""`earmark device doctor` against a real ALSA capture device and a real mosquitto."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from contract import topics
from contract.messages import ConsentState
from review_opt_out.signing import ConsentSigner, create_key
from tests.broker import Broker, free_port
from tests.conftest import broken_micro_models, run_cli
from tests.integration.test_cli import alsa_home


def write_config(path: Path, port: int, consent_key: Path | None = None) -> Path:
    key_line = f'consent_public_key = "{consent_key}"\n' if consent_key is not None else ""
    path.write_text(
        f'device = "fakemic"\n{key_line}[identity]\ndevice_id = "kitchen-1"\nhousehold_id = "h-42"\n'
        f"[mqtt]\nport = {port}\n"
    )
    return path


def test_doctor_passes_when_everything_is_there(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    broker.start()
    try:
        publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        public_key, _ = create_key(tmp_path / "cloud")
        state = ConsentState(household_id="h-42", review_allowed=False, consent_version=1, changed_at=datetime.now(UTC))
        signed = ConsentSigner.load(tmp_path / "cloud").sign(state)
        publisher.publish(topics.consent("h-42"), signed, qos=1, retain=True).wait_for_publish(5)
        publisher.loop_stop()
        publisher.disconnect()
        env = alsa_home(tmp_path, np.zeros(16000, dtype=np.int16))
        config = write_config(tmp_path / "d.toml", broker.port, public_key)
        done = run_cli("doctor", "--config", str(config), env=env)
    finally:
        broker.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for name in ("microphone", "wake word models", "consent key", "broker reachable", "TLS", "credentials",
                 "consent message"):  # fmt: skip
        assert any(line.startswith(f"ok   {name}:") for line in lines), done.stdout
    assert "ok   wake word models: loaded alexa (two-stage: microWakeWord listens, openWakeWord confirms)" in lines


def test_doctor_is_loud_about_a_broken_first_stage_model(tmp_path: Path) -> None:
    broken = broken_micro_models(tmp_path / "micro")
    config = write_config(tmp_path / "d.toml", free_port())
    config.write_text(config.read_text() + f'[wake]\nmicro_model_dir = "{broken}"\n')
    done = run_cli("doctor", "--config", str(config), env=alsa_home(tmp_path, np.zeros(16000, dtype=np.int16)))
    assert done.returncode == 1
    line = next(line for line in done.stdout.splitlines() if line.startswith("FAIL wake word models:"))
    assert f"microWakeWord model {broken / 'alexa.json'}" in line, done.stdout
    assert "wake.micro_model_dir" in done.stdout  # and how to fix it


def test_doctor_names_each_failure_and_its_fix(tmp_path: Path) -> None:
    config = write_config(tmp_path / "d.toml", free_port())  # nothing listens there
    config.write_text(config.read_text().replace('device = "fakemic"', 'device = "usb-headset"'))
    done = run_cli("doctor", "--config", str(config), env=alsa_home(tmp_path, np.zeros(1600, dtype=np.int16)))
    assert done.returncode == 1
    assert "FAIL microphone: mic 'usb-headset': no input device matches" in done.stdout
    assert "FAIL broker reachable:" in done.stdout
    assert "FAIL consent key: no consent_public_key" in done.stdout
    assert done.stdout.count("fix:") == 3


def test_doctor_flags_a_consent_message_the_device_would_not_believe(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    broker.start()
    try:
        public_key, _ = create_key(tmp_path / "cloud")
        spoofer = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        spoofer.connect("127.0.0.1", broker.port)
        spoofer.loop_start()
        state = ConsentState(household_id="h-42", review_allowed=True, consent_version=9, changed_at=datetime.now(UTC))
        spoofer.publish(topics.consent("h-42"), state.model_dump_json(), qos=1, retain=True).wait_for_publish(5)
        spoofer.loop_stop()
        spoofer.disconnect()
        env = alsa_home(tmp_path, np.zeros(16000, dtype=np.int16))
        done = run_cli("doctor", "--config", str(write_config(tmp_path / "d.toml", broker.port, public_key)), env=env)
    finally:
        broker.stop()
    assert done.returncode == 1
    assert "FAIL consent message: the retained consent message is not one the device believes (unsigned)" in done.stdout


def test_doctor_shows_home_assistant_mode_and_checks_what_that_mode_needs(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "d.toml"
    config.write_text(
        f'mode = "home_assistant"\ndevice = "fakemic"\n[satellite]\nport = {port}\n'
        '[identity]\ndevice_id = "kitchen-1"\nhousehold_id = "h-42"\n'  # configured, and not used in this mode
    )
    env = alsa_home(tmp_path, np.zeros(16000, dtype=np.int16))
    done = run_cli("doctor", "--config", str(config), env=env)
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    assert lines[0].startswith("ok   mode: home_assistant:") and "nothing is sent to the Earmark cloud" in lines[0]
    assert f"ok   satellite port: 0.0.0.0:{port} is free" in done.stdout
    assert "ok   speaker: sounds and replies play on nullsink" in done.stdout  # this HOME's only output
    assert not any(name in done.stdout for name in ("broker reachable", "credentials", "consent key"))

    config.write_text(config.read_text() + '[output]\nsound_device = "usb-speaker"\n')
    done = run_cli("doctor", "--config", str(config), env=env)
    assert done.returncode == 1
    assert "FAIL speaker: speaker 'usb-speaker': no output device matches" in done.stdout
