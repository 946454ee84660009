"""The files `earmark flash` puts on the boot partition, rendered from a `FlashConfig`.

Raspberry Pi OS (Bookworm and later) runs cloud-init from the FAT boot partition:
`user-data` (hostname, user, SSH key, first-boot commands) and `network-config` (Wi-Fi).
Beside them go `earmark/device.toml` (the speaker's settings, built as the speaker's own
settings model and written from it), the broker password apart from it, the keys, and
`install.sh`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomli_w

from hardware.flash_config import FlashConfig
from hardware.speaker import SpeakerSettings

# Where install.sh puts what it finds on the boot partition.
STATE_DIR = "/var/lib/earmark"
CA_FILE = "/etc/earmark/ca.pem"
CONSENT_KEY_FILE = "/etc/earmark/consent.pub"
CAPTURE_DEVICE = "earmark"  # the ALSA capture device install.sh defines

_HEADER = f"""\
The speaker's settings, written by earmark flash (see docs/flashing.md).
device = "{CAPTURE_DEVICE}" is the ALSA capture device install.sh defines. Change `mode` and
restart the service to switch between the Earmark cloud and Home Assistant."""


def device_settings(config: FlashConfig) -> SpeakerSettings:
    """The speaker's settings for this config, as the speaker itself will load them.

    Whatever cloud fields were given are set in either mode, so switching mode later is
    one line of device.toml and a restart, never a reflash. The broker password is not
    among them: it goes to a root-only file of its own.
    """
    values: dict[str, Any] = {
        "mode": config.mode,
        "input": "mic",
        "device": CAPTURE_DEVICE,
        "state_dir": STATE_DIR,
        "frontend": {"preroll_seconds": 1.5},
        "satellite": {"name": config.hostname, **({"area": config.area} if config.area else {})},
        "gpio": {"enabled": True},
    }
    if config.consent_public_key:
        values["consent_public_key"] = CONSENT_KEY_FILE
    if config.device_id and config.household_id:
        values["identity"] = {"device_id": config.device_id, "household_id": config.household_id}
    if config.broker_url:
        host, _, port = config.broker_url.split("://", 1)[1].partition(":")
        tls = config.broker_url.startswith("mqtts://")
        values["mqtt"] = {
            "host": host,
            "port": int(port) if port else (8883 if tls else 1883),
            **({"username": config.device_id} if config.device_id else {}),
            "tls": tls,
            **({"ca_file": CA_FILE} if config.ca_certificate else {}),
        }
    return SpeakerSettings.model_validate(values)


def device_toml(config: FlashConfig) -> str:
    """`earmark/device.toml`: only the settings flash chose; the speaker's defaults fill in the rest."""
    header = "".join(f"# {line}\n" for line in _HEADER.splitlines())
    return header + tomli_w.dumps(device_settings(config).model_dump(mode="json", exclude_unset=True))


def _env_quoted(secret: str) -> str:
    """A value for a systemd EnvironmentFile, in double quotes with `\\` and `"` escaped."""
    escaped = secret.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _quoted(value: str) -> str:
    """A double-quoted YAML scalar with control characters escaped, so a value can never add a line."""
    escaped = "".join(
        "\\" + c if c in '"\\' else f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in value
    )
    return f'"{escaped}"'


def user_data(config: FlashConfig) -> str:
    """cloud-init's `user-data`: host name, an admin who logs in by SSH key only, and the install command."""
    return "\n".join(
        [
            "#cloud-config",
            f"hostname: {config.hostname}",
            "manage_etc_hosts: true",
            "users:",
            f"  - name: {config.username}",
            "    groups: [sudo, audio, gpio]",
            "    shell: /bin/bash",
            "    sudo: ALL=(ALL) NOPASSWD:ALL",
            "    lock_passwd: true",
            "    ssh_authorized_keys:",
            f"      - {config.ssh_public_key}",
            "ssh_pwauth: false",
            "runcmd:",
            f"  - [env, EARMARK_AUDIO={config.audio}, bash, /boot/firmware/earmark/install.sh]",
            "",
        ]
    )


def network_config(config: FlashConfig) -> str | None:
    """cloud-init's `network-config` for the Wi-Fi, if there is one."""
    if config.wifi is None:
        return None
    return "\n".join(
        [
            "network:",
            "  version: 2",
            "  wifis:",
            "    wlan0:",
            "      dhcp4: true",
            "      optional: true",
            f"      regulatory-domain: {config.wifi.country}",
            "      access-points:",
            f"        {_quoted(config.wifi.ssid)}:",
            f"          password: {_quoted(config.wifi.password.get_secret_value())}",
            "",
        ]
    )


def render(config: FlashConfig) -> dict[str, str]:
    """The files to put on the boot partition, by path."""
    files = {
        "user-data": user_data(config),
        "earmark/device.toml": device_toml(config),
        "earmark/install.sh": (Path(__file__).parent / "install.sh").read_text(),
    }
    if config.device_password is not None:
        # Kept apart: install.sh moves it to a root-only file and shreds it from the FAT partition.
        password = _env_quoted(config.device_password.get_secret_value())
        files["earmark/credentials.env"] = f"EARMARK_MQTT__PASSWORD={password}\n"
    if config.ca_certificate:
        files["earmark/ca.pem"] = config.ca_certificate
    if config.consent_public_key:
        files["earmark/consent.pub"] = config.consent_public_key
    network = network_config(config)
    if network is not None:
        files["network-config"] = network
    return files
