"""Small things a newcomer hit in the first hour, each checked in this process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from firmware import native_stderr
from firmware.wake import WakeSettings, WakeWordDetector
from hardware.broker_config import main as provision_main
from pipeline.errors import ModelError
from pipeline.models import fetch


@pytest.mark.parametrize(
    ("url", "sha256", "says"),
    [
        ("not-a-url", "0" * 64, "not-a-url: not a URL"),
        ("ftp-ish:thing", "0" * 64, "not a URL"),
        ("https://example.invalid/model.zip", "abc", "--sha256 abc: not a SHA-256"),
    ],
)
def test_models_fetch_names_a_bad_url_or_digest_before_touching_anything(
    tmp_path: Path, url: str, sha256: str, says: str
) -> None:
    with pytest.raises(ModelError, match=says):
        fetch(url, sha256, tmp_path / "models")
    assert not (tmp_path / "models").exists()


def test_provision_help_describes_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        provision_main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for described in ("[[device]] tables", "folder for mosquitto.conf", "make a CA", "the broker's port"):
        assert described in text


def test_native_stderr_keeps_only_what_it_is_told(capfd: pytest.CaptureFixture[str]) -> None:
    with native_stderr.filtered(lambda line: "keep" in line):
        os.write(2, b"INFO: noise\nkeep: this one\n")
    assert capfd.readouterr().err == "keep: this one\n"


def test_loading_the_wake_word_models_prints_no_tflite_banner(capfd: pytest.CaptureFixture[str]) -> None:
    WakeWordDetector(WakeSettings())
    assert "XNNPACK" not in capfd.readouterr().err
