"""End to end with Home Assistant itself: its wyoming integration drives the Earmark speaker.

Home Assistant 2024.3.3 (the last release for Python 3.11, from `.venv-ha`, which
`scripts/bootstrap.sh dev` installs) starts on a fresh configuration; it is set up through
its own onboarding, config-flow and websocket APIs; its Assist pipeline uses a Wyoming
speech service (the Korean Vosk model, espeak-ng Korean). The speaker is the real service
with stdin as its microphone and ALSA's file plugin as its loudspeaker.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from firmware.sounds import Sound, render
from scripts.satellite_rig import MicrophoneFeed, SpeakerProcess
from scripts.speech import espeak, silence
from tests.broker import free_port
from tests.conftest import FIXTURES, REPO, load_pcm, wait_until

HA_PYTHON = REPO / ".venv-ha" / "bin" / "python"
HERE = Path(__file__).parent.parent / "homeassistant"
CONFIGURATION = """\
homeassistant:
  name: Earmark test home
  latitude: 0
  longitude: 0
  elevation: 0
  unit_system: metric
  time_zone: UTC
  country: KR
http:
  server_host: 127.0.0.1
  server_port: {http_port}
api:
config:
onboarding:
ffmpeg:
assist_pipeline:
conversation:
media_source:
logger:
  default: warning
  logs:
    homeassistant.components.wyoming: debug
"""


class Lines:
    """A process's output, collected line by line on a thread."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        stream = process.stdout
        self._thread = threading.Thread(target=lambda: self.lines.extend(iter(stream.readline, "")), daemon=True)
        self._thread.start()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.lines) if line.startswith("{")]

    def has(self, event: str) -> bool:
        return any(r.get("event") == event for r in self.records())


def start(command: list[str], home: Path, log: Path | None = None) -> subprocess.Popen[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(home)}
    if log is None:
        return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    with log.open("w") as out:  # the child keeps its own descriptor
        return subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    running: list[subprocess.Popen[str]] = []
    yield running
    for process in running:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_home_assistant_runs_a_request_through_the_earmark_speaker(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    if not HA_PYTHON.exists():
        pytest.fail(f"{HA_PYTHON} is missing: run `bash scripts/bootstrap.sh dev`, which installs Home Assistant there")
    http_port, services_port = free_port(), free_port()
    replies = tmp_path / "replies"
    replies.mkdir()
    services = start(
        [sys.executable, "-m", "tests.homeassistant.speech_services", str(services_port), str(replies)], tmp_path
    )
    processes.append(services)
    services_out = Lines(services)
    speaker = SpeakerProcess(tmp_path, None)
    processes.append(speaker.process)  # type: ignore[arg-type]
    room = MicrophoneFeed(speaker)
    config = tmp_path / "ha-config"
    config.mkdir()
    (config / "configuration.yaml").write_text(CONFIGURATION.format(http_port=http_port))
    home_assistant = start(
        [str(REPO / ".venv-ha" / "bin" / "hass"), "-c", str(config), "--skip-pip", "--log-no-color"],
        tmp_path,
        log=tmp_path / "home-assistant.log",
    )
    processes.append(home_assistant)
    try:
        assert wait_until(lambda: services_out.has("listening"), 120), services_out.lines
        setup = start(
            [
                str(HA_PYTHON),
                str(HERE / "setup_home_assistant.py"),
                str(http_port),
                str(services_port),
                str(speaker.port),
            ],
            tmp_path,
        )
        out, _ = setup.communicate(timeout=240)
        assert setup.returncode == 0, out + (tmp_path / "home-assistant.log").read_text()[-4000:]
        # Home Assistant connects to the satellite and runs it: the household can speak.
        assert wait_until(lambda: speaker.logged("runs the satellite"), 60), "\n".join(speaker.log)

        alexa = load_pcm(FIXTURES / "alexa_only.wav")
        room.say(np.concatenate([alexa, silence(0.3), espeak("지금 몇 시야", "ko", 140)]))
        assert wait_until(lambda: services_out.has("synthesized"), 120), (
            "\n".join(speaker.log) + "\n" + "\n".join(services_out.lines)
        )
        reply_path = Path(next(r["path"] for r in services_out.records() if r["event"] == "synthesized"))
        reply = np.frombuffer(reply_path.read_bytes(), dtype="<i2")

        def reply_played() -> bool:
            played = speaker.played()
            return len(played) >= 3 and len(played[2]) >= 0.98 * len(reply)

        assert wait_until(reply_played, 60), "\n".join(speaker.log)
    finally:
        room.stop()
        status = speaker.stop()
    assert status == 0, "\n".join(speaker.log)

    records = services_out.records()
    transcribed = next(r for r in records if r["event"] == "transcribed")
    synthesized = next(r for r in records if r["event"] == "synthesized")
    # Home Assistant's recognizer got the end of the pre-roll and the command, and heard words
    # in it (which words cannot be judged with espeak-ng Korean).
    assert transcribed["audio_bytes"] / 32000 > 0.3 + 1.0
    assert transcribed["text"] and synthesized["text"], "Home Assistant heard and answered"
    wake, done, spoken = speaker.played()[:3]
    volume = 0.8
    for played, sound in ((wake, Sound.WAKE), (done, Sound.DONE)):
        expected = (np.frombuffer(render(sound), dtype="<i2").astype(np.float32) * volume).astype("<i2")
        assert np.abs(played.astype(int) - expected).max() <= 1
    # The reply Home Assistant streamed is what the speaker played (ffmpeg re-wraps it in WAV).
    assert abs(len(spoken) - len(reply)) < 0.02 * len(reply)
    assert speaker.logged("Home Assistant at")
    assert not any(transcribed["text"] in line or synthesized["text"] in line for line in speaker.log)
