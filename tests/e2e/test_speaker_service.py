"""The on-device service: systemd unit, sd_notify watchdog pings, LEDs and a muted restart."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from firmware.mute import MuteState
from firmware.watchdog import Notifier
from hardware.gpio import GpioSettings
from hardware.speaker import SpeakerSettings, run
from tests.conftest import REPO

UNIT = REPO / "hardware" / "systemd" / "earmark-speaker.service"


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, dict[str, str]]]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0)
    yield sock, {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"}  # ping every 0.1 s
    sock.close()


def drain(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    executable = Path(sys.executable).parent / "earmark-speaker"
    assert executable.exists(), "pip install -e . provides earmark-speaker"
    unit = tmp_path / "earmark-speaker.service"
    unit.write_text(UNIT.read_text().replace("/opt/earmark/.venv/bin/earmark-speaker", str(executable)))
    done = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr  # unknown keys only warn: treat any output as a failure
    text = UNIT.read_text()
    hardening = ("Type=notify", "WatchdogSec=", "User=earmark", "SupplementaryGroups=audio", "ProtectSystem=strict")
    for line in (*hardening, "NoNewPrivileges=yes", "Restart=on-failure", "EnvironmentFile=-/etc/earmark/"):
        assert line in text


def test_notifier_sends_ready_and_paced_watchdog_pings(notify_socket: tuple[socket.socket, dict[str, str]]) -> None:
    sock, env = notify_socket
    now = [0.0]
    notifier = Notifier(env, clock=lambda: now[0])
    notifier.ready()
    for _ in range(10):  # ten calls within 50 ms: one ping
        notifier.ping()
        now[0] += 0.005
    now[0] += 0.2
    notifier.ping()
    notifier.close()
    assert drain(sock) == ["READY=1", "WATCHDOG=1", "WATCHDOG=1"]
    assert not Notifier({}).enabled


def test_service_runs_pings_lights_and_restarts_muted(
    tmp_path: Path, notify_socket: tuple[socket.socket, dict[str, str]]
) -> None:
    sock, env = notify_socket
    factory = MockFactory()
    settings = SpeakerSettings(input="sample", state_dir=tmp_path, gpio=GpioSettings(enabled=True))
    assert run(settings, Notifier(env), pin_factory=factory) == 0
    messages = drain(sock)
    assert messages[0] == "READY=1" and "WATCHDOG=1" in messages and messages[-1] == "STOPPING=1"
    factory.reset()

    MuteState(tmp_path / "mute.json").set(True)  # muted before a restart
    factory = MockFactory()
    assert run(settings, Notifier(env), pin_factory=factory) == 0
    messages = drain(sock)
    assert "STATUS=muted" in messages and "WATCHDOG=1" in messages  # still alive while muted
    assert factory.pin(13).state  # the muted LED is on
    factory.reset()
