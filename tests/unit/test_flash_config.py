"""earmark flash before any image is touched: its config, the device.toml it becomes, and input checks."""

from __future__ import annotations

import os
import time
import tomllib
from pathlib import Path

import pytest
import tomli_w

from contract.config import ConfigError, load_settings
from firmware.satellite.settings import DeviceMode
from hardware.flash import FlashConfig, device_settings, load_flash_config, main, render, temporary_wheel
from hardware.speaker import SpeakerSettings

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyOnlyForTests dev@laptop"
CONSENT_KEY = (
    "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAexampleexampleexampleexampleexampleexam=\n-----END PUBLIC KEY-----\n"
)
CLOUD = FlashConfig(
    hostname="kitchen-speaker",
    ssh_public_key=SSH_KEY,
    device_id="kitchen-1",
    household_id="h-42",
    broker_url="mqtts://broker.example.org",
    device_password="s3cret-device-password",  # type: ignore[arg-type]
    ca_certificate="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    consent_public_key=CONSENT_KEY,
)
HOME_ASSISTANT = FlashConfig(
    hostname="living-room", ssh_public_key=SSH_KEY, mode=DeviceMode.HOME_ASSISTANT, area='Living "Room"\n[gpio]'
)
VALID_TABLE = f'hostname = "kitchen-speaker"\nmode = "home_assistant"\nssh_public_key = "{SSH_KEY}"\n'


@pytest.fixture(autouse=True)
def _no_earmark_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The speaker's loader layers EARMARK_* variables over the file: none may leak in."""
    for name in os.environ:
        if name.upper().startswith("EARMARK_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("config", [CLOUD, HOME_ASSISTANT], ids=["cloud", "home_assistant"])
def test_device_toml_loads_back_through_the_speakers_loader_into_the_same_settings(
    tmp_path: Path, config: FlashConfig
) -> None:
    settings_file = tmp_path / "device.toml"
    settings_file.write_text(render(config)["earmark/device.toml"])
    loaded = load_settings(SpeakerSettings, settings_file)  # what earmark-speaker does on the Pi
    built = device_settings(config)
    assert loaded == built
    # Only what flash chose is in the file; the speaker's own defaults fill in the rest.
    chosen = built.model_dump(mode="json", exclude_unset=True)
    assert tomllib.loads(settings_file.read_text()) == chosen
    assert loaded.model_dump(mode="json", exclude_unset=True) == chosen


def test_device_toml_holds_what_the_speaker_needs_and_no_secret() -> None:
    text = render(CLOUD)["earmark/device.toml"]
    device = tomllib.loads(text)
    assert device["mode"] == "cloud" and device["device"] == "earmark" and device["state_dir"] == "/var/lib/earmark"
    assert device["mqtt"] == {"host": "broker.example.org", "port": 8883, "username": "kitchen-1", "tls": True,
                              "ca_file": "/etc/earmark/ca.pem"}  # fmt: skip
    assert device["satellite"] == {"name": "kitchen-speaker"} and device["gpio"] == {"enabled": True}
    assert "s3cret-device-password" not in text
    # A value with quotes and line breaks stays one value: it cannot add a table.
    home = tomllib.loads(render(HOME_ASSISTANT)["earmark/device.toml"])
    assert home["satellite"]["area"] == HOME_ASSISTANT.area and home["gpio"] == {"enabled": True}
    assert "identity" not in home and "mqtt" not in home


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('[device.wifi]\nssid = "Home"\npassword = "short"\n',
         "device.wifi.password: must be 8 to 63 printable ASCII characters (or 64 hex digits)"),
        ('broker_url = "http://broker.example.org"\n',
         "device.broker_url: must start with mqtt:// or mqtts://"),
        ('device_password = "two\\nlines"\n',
         "device.device_password: must be 1 to 256 printable ASCII characters without spaces"),
        ('[device.wifi]\nssid = "Ho\\nme"\npassword = "long enough"\n',
         "device.wifi.ssid: must be 1 to 32 characters on one line"),
        ('[device.wifi]\nssid = "Home"\npassword = "long enough"\ncountry = "uk"\n',
         "device.wifi.country: must be a two-letter country code in capitals, e.g. GB"),
        ('device_id = "kitchen 1"\n', "device.device_id: must be 1 to 64 letters, digits"),
        ('area = "' + "x" * 64 + '"\n', "device.area: must be at most 63 characters"),
        ('audio = "bluetooth"\n', "device.audio: must be usb, respeaker-2mic-v1 or respeaker-2mic-v2"),
        ('username = "Admin"\n', "device.username: must be 1 to 32 lowercase letters"),
        ('consent_public_key = "not a key"\n', "device.consent_public_key: must be a PEM public key"),
    ],
)  # fmt: skip
def test_a_bad_value_reads_as_a_rule_for_that_field(tmp_path: Path, table: str, expected: str) -> None:
    config = tmp_path / "kitchen.toml"
    config.write_text(f"[device]\n{VALID_TABLE}{table}")
    with pytest.raises(ConfigError) as raised:
        load_flash_config(config)
    message = str(raised.value)
    assert message.startswith(f"{config}: ") and expected in message
    for library_words in ("should", "Value error", "pattern", "after validation", "^"):
        assert library_words not in message
    assert "two\nlines" not in message and "short" not in message  # a secret is never repeated


def test_every_field_rule_is_in_words(tmp_path: Path) -> None:
    bad = {
        "hostname": "Not A Hostname!", "ssh_public_key": "password123", "mode": "party", "area": "x" * 64,
        "device_id": "a b", "household_id": "a/b", "broker_url": "mqtt://h/path", "device_password": "a b",
        "ca_certificate": 42, "consent_public_key": "x", "username": "1abc", "audio": "hdmi",
        "wifi": {"ssid": "", "password": "é" * 9, "country": "gbr"},
    }  # fmt: skip
    config = tmp_path / "kitchen.toml"
    config.write_text(tomli_w.dumps({"device": bad}))
    with pytest.raises(ConfigError) as raised:
        load_flash_config(config)
    parts = str(raised.value).split(": ", 1)[1].split("; ")
    named = [part.split(":", 1)[0] for part in parts]
    expected = [f"device.{name}" for name in bad if name != "wifi"]
    assert sorted(named) == sorted([*expected, "device.wifi.ssid", "device.wifi.password", "device.wifi.country"])
    assert all(part.split(": ", 1)[1].startswith("must ") for part in parts), parts


def test_a_missing_or_unknown_setting_is_said_in_words(tmp_path: Path) -> None:
    config = tmp_path / "kitchen.toml"
    config.write_text('[device]\nhostname = "kitchen"\nbroker = "mqtt://h"\nwifi = "Home"\n')
    with pytest.raises(ConfigError) as raised:
        load_flash_config(config)
    assert str(raised.value) == (
        f"{config}: device.ssh_public_key: required; device.wifi: must be a table;"
        " device.broker: not a setting earmark flash knows (a typo?)"
    )


def test_cloud_mode_names_what_it_misses_in_words(tmp_path: Path) -> None:
    config = tmp_path / "kitchen.toml"
    config.write_text(f'[device]\nhostname = "kitchen"\nssh_public_key = "{SSH_KEY}"\ndevice_id = "k-1"\n')
    with pytest.raises(ConfigError, match=r"device: mode 'cloud' needs household_id, broker_url, device_password"):
        load_flash_config(config)


def test_an_unreadable_config_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{tmp_path / 'none.toml'}: no such config file"):
        load_flash_config(tmp_path / "none.toml")
    with pytest.raises(ConfigError, match=f"{tmp_path}: a directory, not a config file"):
        load_flash_config(tmp_path)
    broken = tmp_path / "broken.toml"
    broken.write_text("[device\n")
    with pytest.raises(ConfigError, match=f"{broken}: not valid TOML"):
        load_flash_config(broken)


def flash(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, float]:
    """`earmark flash ARGV` in this process: exit status, stderr, seconds taken."""
    started = time.monotonic()
    status = main(list(argv))
    return status, capsys.readouterr().err, time.monotonic() - started


@pytest.mark.parametrize("problem", ["missing", "directory", "not-an-image", "not-xz", "no-wheel"])
def test_inputs_are_checked_before_the_wheel_is_built(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], problem: str
) -> None:
    config = tmp_path / "kitchen.toml"
    config.write_text(f"[device]\n{VALID_TABLE}")
    image = tmp_path / ("raspios.img.xz" if problem in ("not-xz", "no-wheel") else "raspios.img")
    extra: list[str] = []
    if problem == "directory":
        image.mkdir()
    elif problem in ("not-an-image", "not-xz"):
        image.write_bytes(b"this is a text file, not a disk image\n" * 100)
    elif problem == "no-wheel":
        image.write_bytes(b"\xfd7zXZ\x00" + bytes(4096))  # passes the quick check: the wheel is next
        extra = ["--wheel", str(tmp_path / "earmark-0.1.0-py3-none-any.whl")]
    status, err, seconds = flash(capsys, str(image), "--config", str(config), *extra)
    assert status == 2 and err.count("\n") == 1, err
    named = tmp_path / "earmark-0.1.0-py3-none-any.whl" if problem == "no-wheel" else image
    assert f"{named}" in err and ".earmark-" not in err, err
    # Building the wheel takes seconds: refusing came first, and left nothing behind.
    assert seconds < 3, f"took {seconds:.1f} s"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".earmark-")]


def test_the_wheel_folder_is_removed_whatever_happens(tmp_path: Path) -> None:
    def fake_build(folder: Path) -> Path:
        wheel = folder / "earmark-0.1.0-py3-none-any.whl"
        wheel.write_bytes(b"PK")
        return wheel

    with temporary_wheel(tmp_path, build=fake_build) as wheel:
        assert wheel.read_bytes() == b"PK" and wheel.parent.name.startswith(".earmark-wheel-")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(KeyboardInterrupt), temporary_wheel(tmp_path, build=fake_build):
        raise KeyboardInterrupt  # Ctrl-C while the image is being written
    assert list(tmp_path.iterdir()) == []

    def failing_build(folder: Path) -> Path:
        (folder / "src").mkdir()
        raise ConfigError("could not build the earmark wheel")

    with pytest.raises(ConfigError), temporary_wheel(tmp_path, build=failing_build):
        pass
    assert list(tmp_path.iterdir()) == []
