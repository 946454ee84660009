"""One `[output]` table for both modes; the old `[assistant]`/`[satellite]` keys still read for a release."""

from __future__ import annotations

import logging
import os
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from firmware.audio import output_settings
from firmware.audio.output_settings import OUTPUT_KEYS, OutputSettings
from firmware.errors import ConfigError
from firmware.satellite.settings import DeviceMode
from firmware.settings import DeviceSettings, load_settings
from hardware.flash_config import FlashConfig
from hardware.flash_files import device_toml
from hardware.speaker import SpeakerSettings

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyOnlyForTests dev@laptop"
OLD_FILE = """
mode = "{mode}"
[assistant]
language = "ko"
volume = 0.5
timer_rings = 7
[satellite]
port = 10701
volume = 0.3
sound_device = "usb"
"""


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees the once-per-process warning as a new process would, and no EARMARK_* variable."""
    monkeypatch.setattr(output_settings, "_warned", set())
    for name in os.environ:
        if name.upper().startswith("EARMARK_"):
            monkeypatch.delenv(name)


def test_both_modes_read_one_table_with_one_default() -> None:
    settings = load_settings(None)
    assert settings.output == OutputSettings(sound_device=None, sounds=True, volume=0.8, timer_rings=5)
    assert load_settings(None, output={"timer_rings": 60}).output.timer_rings == 60  # what cloud mode allowed
    with pytest.raises(ConfigError, match=r"output\.timer_rings"):
        load_settings(None, output={"timer_rings": 61})
    with pytest.raises(ValidationError):
        OutputSettings(volume=1.5)


@pytest.mark.parametrize(
    ("mode", "volume", "rings", "device"),
    [("cloud", 0.5, 7, None), ("home_assistant", 0.3, 5, "usb")],
)
def test_an_old_file_keeps_what_its_mode_played_with_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: str, volume: float, rings: int, device: str | None
) -> None:
    config = tmp_path / "device.toml"
    config.write_text(OLD_FILE.format(mode=mode))
    with caplog.at_level(logging.WARNING):
        settings = load_settings(config)
        again = load_settings(config)
    # The running mode's table gives the value; the other mode's never applied to this mode.
    assert settings.output == OutputSettings(sound_device=device, volume=volume, timer_rings=rings)
    assert again == settings
    assert settings.assistant.language == "ko" and settings.satellite.port == 10701
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    for name in ("assistant.volume", "assistant.timer_rings", "satellite.volume", "satellite.sound_device"):
        assert name in warnings[0]
    assert "[output]" in warnings[0] and "deprecated" in warnings[0]


def test_a_flag_or_variable_beats_an_old_key_in_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "device.toml"
    config.write_text(OLD_FILE.format(mode="home_assistant"))
    assert load_settings(config, output={"sound_device": "hat"}).output.sound_device == "hat"
    monkeypatch.setenv("EARMARK_OUTPUT__VOLUME", "0.9")
    assert load_settings(config).output.volume == 0.9


def test_an_old_variable_still_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EARMARK_ASSISTANT__SOUND_DEVICE", "filespeaker")
    monkeypatch.setenv("EARMARK_ASSISTANT__VOLUME", "0.4")
    assert load_settings(None).output == OutputSettings(sound_device="filespeaker", volume=0.4)


def test_an_old_key_that_differs_from_the_new_one_names_both(tmp_path: Path) -> None:
    config = tmp_path / "device.toml"
    config.write_text("[satellite]\ntimer_rings = 3\n[output]\ntimer_rings = 4\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert "output.timer_rings" in str(caught.value) and "satellite.timer_rings" in str(caught.value)
    config.write_text("[satellite]\ntimer_rings = 4\n[output]\ntimer_rings = 4\n")  # the same: only a warning
    assert load_settings(config).output.timer_rings == 4
    with pytest.raises(ConfigError, match=r"output\.volume .* assistant\.volume"):
        DeviceSettings.model_validate({"assistant": {"volume": 0.2}, "output": {"volume": 0.3}})


def test_settings_built_directly_move_old_keys_too() -> None:
    settings = SpeakerSettings.model_validate({"mode": "home_assistant", "satellite": {"sounds": False}})
    assert settings.output.sounds is False
    assert "sounds" not in settings.satellite.model_dump()


def test_flash_writes_no_old_key() -> None:
    config = FlashConfig(hostname="kitchen", ssh_public_key=SSH_KEY, mode=DeviceMode.HOME_ASSISTANT)
    tables = tomllib.loads(device_toml(config))
    assert tables["satellite"] == {"name": "kitchen"}
    assert not OUTPUT_KEYS & tables.get("assistant", {}).keys()
