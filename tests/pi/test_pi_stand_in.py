"""The real install.sh and speaker on an arm64 stand-in for Raspberry Pi OS (qemu-user).

conftest starts `python -m scripts.pi_stand_in RELEASE` for both releases in the
background as soon as these tests are collected, so the emulated runs overlap the rest
of the suite; each test waits for its release and checks the report. Base roots are
cached outside the checkout, so only the first run pays for debootstrap.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import pytest

from tests.conftest import PiStandInRun

pytestmark = [pytest.mark.pi, pytest.mark.skipif(os.geteuid() != 0, reason="the stand-in runs as root (CI does)")]


@pytest.mark.parametrize("release", ["bookworm", "trixie"])
def test_install_and_listen_on_the_arm64_stand_in(
    release: str, pi_stand_in_run: Callable[[str, float], PiStandInRun]
) -> None:
    run = pi_stand_in_run(release, 3600)
    log = run.log.read_text()[-4000:]
    assert run.report.exists(), log
    report = json.loads(run.report.read_text())
    failed = {name: report.get(f"failed: {name}") for name, ok in report["checks"].items() if not ok}
    assert not failed, failed
    assert run.process.returncode == 0, log
    assert report["installed"]["machine"] == "aarch64"
    assert report["installed"]["python"].startswith({"bookworm": "3.11.", "trixie": "3.13."}[release])
    assert not report["installed"]["unwanted"]
    kinds = [e["type"] for e in report["events"] if e["type"] != "state_changed"]
    assert kinds == ["wake_detected", "speech_started", "speech_ended", "utterance_ready"]
    assert report["speaker_bench"]["first_ready_seconds"] is not None
    print(json.dumps({"release": release, "timings_seconds": report["timings_seconds"]}))  # noqa: T201
