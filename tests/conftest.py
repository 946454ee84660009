"""Shared fixtures: real models loaded once, audio helpers, and a CLI runner."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from contract.audio import FRAME_BYTES
from firmware.audio.source import SAMPLE_WAV
from firmware.audio.wav import read_wav
from firmware.events import FrontEndEvent
from firmware.frontend import FrontEnd, FrontEndSettings
from firmware.wake import BUNDLED_WAKE_WORDS, WakeSettings, WakeWordDetector, WakeWordSpec
from tests.broker import Broker

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent

Pcm = npt.NDArray[np.int16]


@dataclass
class PiStandInRun:
    """One release's stand-in run, started in the background at collection."""

    process: subprocess.Popen[bytes]
    report: Path
    log: Path


_PI_RUNS: dict[str, PiStandInRun] = {}


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the arm64 stand-in runs now, if their tests will run.

    Under emulation a release takes minutes (tens of minutes while its base root is
    first built); started here, that overlaps the rest of the suite instead of adding
    to it, as the suite must pass beside two busy cores anyway. The tests wait for them.
    """
    releases = sorted(
        {item.callspec.params["release"] for item in session.items if item.get_closest_marker("pi")}  # type: ignore[attr-defined]
    )
    if os.geteuid() != 0 or not releases or session.config.option.collectonly:
        return
    workdir = Path(tempfile.mkdtemp(prefix="earmark-pi-runs-"))
    for release in releases:
        report, log = workdir / f"{release}.json", workdir / f"{release}.log"
        command = [sys.executable, "-m", "scripts.pi_stand_in", release, "--report", str(report)]
        with open(log, "wb") as out:
            # Its own session: ending it ends proot and qemu under it too.
            process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=out, start_new_session=True)
        _PI_RUNS[release] = PiStandInRun(process, report, log)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Never leave an emulated run behind the session (a failed or interrupted one)."""
    for run in _PI_RUNS.values():
        if run.process.poll() is None:
            os.killpg(run.process.pid, signal.SIGTERM)
            run.process.wait(timeout=60)


@pytest.fixture
def pi_stand_in_run() -> Callable[[str, float], PiStandInRun]:
    """Wait for a release's background run (a fixture: it must see this module's state,
    not that of a second import of it under another name)."""

    def finished(release: str, timeout_seconds: float) -> PiStandInRun:
        run = _PI_RUNS.get(release)
        if run is None:
            pytest.fail(f"no stand-in run for {release}: run the pi tests as root")
        run.process.wait(timeout=timeout_seconds)
        return run

    return finished


def wait_until(predicate: Callable[[], bool], timeout_seconds: float = 30.0) -> bool:
    """Poll a condition with a bound (no sleeps as synchronisation beyond this)."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def shipped_micro_models() -> Path:
    """pymicro-wakeword's microWakeWord models (a dev and device dependency)."""
    from firmware.micro_wake import bundled_micro_dir

    shipped = bundled_micro_dir()
    if shipped is None:
        raise RuntimeError("pymicro-wakeword is not installed: bash scripts/bootstrap.sh dev")
    return shipped


def broken_micro_models(directory: Path) -> Path:
    """microWakeWord models in `directory`: alexa's corrupt (a truncated download, say), hey_jarvis's whole."""
    shipped = shipped_micro_models()
    directory.mkdir()
    shutil.copy(shipped / "alexa.json", directory / "alexa.json")
    (directory / "alexa.tflite").write_bytes(b"not a model" * 100)
    for name in ("hey_jarvis.json", "hey_jarvis.tflite"):
        shutil.copy(shipped / name, directory / name)
    return directory


def fooled_micro_models(directory: Path) -> Path:
    """A "hey_jarvis" first stage in `directory` that is alexa's model: real models that
    disagree, as two independently trained ones do on a false wake."""
    shipped = shipped_micro_models()
    directory.mkdir()
    shutil.copy(shipped / "alexa.tflite", directory / "alexa.tflite")
    (directory / "hey_jarvis.json").write_text((shipped / "alexa.json").read_text())
    return directory


def load_pcm(path: Path) -> Pcm:
    """A WAV file as 16 kHz mono int16."""
    _info, pcm = read_wav(path)
    return np.frombuffer(pcm, dtype="<i2").copy()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A real mosquitto on a free loopback port, for one test."""
    broker = Broker(tmp_path)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def sample_pcm() -> Pcm:
    return load_pcm(SAMPLE_WAV)


@pytest.fixture(scope="session")
def all_words_detector() -> WakeWordDetector:
    """Every shipped wake word in one model (as a user enabling all five would run)."""
    return WakeWordDetector(WakeSettings(words=tuple(WakeWordSpec(model=w) for w in BUNDLED_WAKE_WORDS)))


@pytest.fixture(scope="session")
def alexa_detector() -> WakeWordDetector:
    return WakeWordDetector(WakeSettings())


def feed(frontend: FrontEnd, pcm: Pcm) -> None:
    """Push audio through the front end frame by frame, zero-padding the last frame."""
    data = pcm.astype("<i2").tobytes()
    data += bytes(-len(data) % FRAME_BYTES)
    for i in range(0, len(data), FRAME_BYTES):
        frontend.process(data[i : i + FRAME_BYTES])


@pytest.fixture
def make_frontend() -> Callable[..., tuple[FrontEnd, list[FrontEndEvent]]]:
    """A front end over a given detector, recording its events."""

    def build(
        detector: WakeWordDetector, settings: FrontEndSettings | None = None
    ) -> tuple[FrontEnd, list[FrontEndEvent]]:
        detector.reset()
        frontend = FrontEnd(settings or FrontEndSettings(), detector)
        events: list[FrontEndEvent] = []
        frontend.subscribe(events.append)
        return frontend, events

    return build


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None, timeout: float = 120
) -> CliResult:
    """Run `earmark device` as a user would, in a child process."""
    done = subprocess.run(
        [sys.executable, "-m", "firmware.cli", *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env={**os.environ, **(env or {})},
        cwd=REPO,
        timeout=timeout,
        check=False,
    )
    return CliResult(done.returncode, done.stdout.decode(), done.stderr.decode())


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The cloud's database for a test that must hold on both engines: None (SQLite in the
    data directory) or the URL of a fresh PostgreSQL database of its own."""
    if request.param == "sqlite":
        yield None
        return
    from tests.postgres import fresh_database

    with fresh_database() as url:
        yield url
