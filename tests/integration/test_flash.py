"""earmark flash on real FAT images the test builds (mkfs.vfat + an MBR partition table)."""

from __future__ import annotations

import hashlib
import lzma
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from contract.config import load_settings
from firmware.doctor import DoctorSettings
from firmware.satellite.settings import DeviceMode
from hardware.flash import (
    FlashConfig,
    FlashError,
    boot_partition_offset,
    check_target,
    configure_image,
    render,
    temporary_wheel,
    write_to_device,
)
from hardware.speaker import SpeakerSettings
from scripts.pi_image import BOOT_START_SECTORS, MIB, blank_pi_image, tool
from tests.conftest import REPO

BOOT_START = BOOT_START_SECTORS

# The consent service's public key, as `earmark review setup` writes it.
CONSENT_PUBLIC_KEY = (
    Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
)

CONFIG = FlashConfig(
    hostname="kitchen-speaker",
    ssh_public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyOnlyForTests dev@laptop",
    device_id="kitchen-1",
    household_id="h-42",
    broker_url="mqtts://broker.example.org:8883",
    device_password="s3cret-device-password",  # type: ignore[arg-type]
    ca_certificate="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    consent_public_key=CONSENT_PUBLIC_KEY,
    wifi={"ssid": "Home Wi-Fi", "password": "wifi pass", "country": "DE"},  # type: ignore[arg-type]
    audio="respeaker-2mic-v2",
)


def need(name: str) -> str:
    try:
        return tool(name)
    except FileNotFoundError as err:
        pytest.fail(f"{err} (.ci/run installs them)")


def build_image(path: Path) -> Path:
    """A 64 MiB disk image: MBR, a FAT boot partition at 4 MiB, a Linux partition after it."""
    return blank_pi_image(path, REPO / "README.md")


def read_file(image: Path, name: str) -> str:
    offset = boot_partition_offset(image)
    done = subprocess.run([need("mtype"), "-i", f"{image}@@{offset}", f"::{name}"], capture_output=True, check=True)
    return done.stdout.decode()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_configures_a_copy_of_the_image_without_mounting(tmp_path: Path) -> None:
    image = build_image(tmp_path / "raspios.img")
    before = sha(image)
    wheel = tmp_path / "earmark-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x05\x06" + bytes(18))
    out = configure_image(image, tmp_path / "kitchen.img", CONFIG, wheel)
    assert sha(image) == before  # the downloaded image is never modified
    user_data = read_file(out, "user-data")
    assert user_data.startswith("#cloud-config") and "hostname: kitchen-speaker" in user_data
    assert CONFIG.ssh_public_key in user_data and "ssh_pwauth: false" in user_data
    assert "EARMARK_AUDIO=respeaker-2mic-v2" in user_data
    network = read_file(out, "network-config")
    assert '"Home Wi-Fi"' in network and "wifi pass" in network and "regulatory-domain: DE" in network
    device = tomllib.loads(read_file(out, "earmark/device.toml"))
    assert device["identity"] == {"device_id": "kitchen-1", "household_id": "h-42"}
    assert device["mqtt"] == {"host": "broker.example.org", "port": 8883, "username": "kitchen-1", "tls": True,
                              "ca_file": "/etc/earmark/ca.pem"}  # fmt: skip
    assert "s3cret-device-password" not in read_file(out, "earmark/device.toml")
    assert read_file(out, "earmark/credentials.env") == 'EARMARK_MQTT__PASSWORD="s3cret-device-password"\n'
    assert read_file(out, "earmark/install.sh").startswith("#!/usr/bin/env bash")
    # The speaker believes consent messages signed by this key only.
    assert read_file(out, "earmark/consent.pub") == CONSENT_PUBLIC_KEY
    assert device["consent_public_key"] == "/etc/earmark/consent.pub"
    assert read_file(out, f"earmark/{wheel.name}").encode("latin-1")[:4] == b"PK\x05\x06"
    assert "Earmark" in read_file(out, "config.txt")  # what was there is still there
    # The file is exactly what the speaker service and the doctor load.
    settings_file = tmp_path / "device.toml"
    settings_file.write_text(read_file(out, "earmark/device.toml"))
    speaker = load_settings(SpeakerSettings, settings_file, mqtt={"password": "from credentials.env"})
    assert speaker.identity is not None and speaker.identity.device_id == "kitchen-1" and speaker.gpio.enabled
    assert load_settings(DoctorSettings, settings_file).mqtt.tls is True


def test_a_compressed_image_is_unpacked_and_configured(tmp_path: Path) -> None:
    raw = build_image(tmp_path / "raspios.img")
    packed = tmp_path / "raspios.img.xz"
    packed.write_bytes(lzma.compress(raw.read_bytes(), preset=0))
    seen: list[tuple[int, int]] = []
    out = configure_image(packed, tmp_path / "kitchen.img", CONFIG, progress=lambda *step: seen.append(step))
    assert "kitchen-speaker" in read_file(out, "user-data")
    # Unpacking reports how far it got through the .xz, ending at all of it.
    size = packed.stat().st_size
    assert seen[-1] == (size, size) and all(0 < done <= size for done, _ in seen)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate", "truncated"),
        ("no-fat", "holds no FAT file system"),
        ("not-an-image", "no partition table"),
        ("bad-xz", "corrupt or truncated .xz"),
        ("xz-of-truncated", "truncated"),
    ],
)
def test_a_damaged_image_gives_a_clear_error_and_writes_nothing(tmp_path: Path, damage: str, message: str) -> None:
    image = build_image(tmp_path / "raspios.img")
    data = image.read_bytes()
    if damage == "truncate":
        image.write_bytes(data[: 20 * MIB])
    elif damage == "no-fat":
        image.write_bytes(data[: BOOT_START * 512] + bytes(512) + data[BOOT_START * 512 + 512 :])
    elif damage == "not-an-image":
        image.write_bytes(b"this is a text file, not a disk image\n" * 100)
    elif damage == "bad-xz":
        image = tmp_path / "raspios.img.xz"
        image.write_bytes(lzma.compress(data, preset=0)[:4096])
    else:  # unpacks fine; the damage shows only in the unpacked working copy
        image = tmp_path / "raspios.img.xz"
        image.write_bytes(lzma.compress(data[: 20 * MIB], preset=0))
    with pytest.raises(FlashError, match=message) as raised:
        configure_image(image, tmp_path / "out" / "kitchen.img", CONFIG)
    # The error names the user's image, never the working copy it was found in.
    assert str(raised.value).startswith(f"{image}: ") and ".earmark-flash-" not in str(raised.value)
    assert list((tmp_path / "out").iterdir()) == []  # no output, no temporary leftovers


def test_refuses_a_mounted_disk_or_the_system_disk() -> None:
    mounts = "/dev/sdb1 /media/pi/bootfs vfat rw 0 0\n/dev/mmcblk0p2 / ext4 rw 0 0\n"
    with pytest.raises(FlashError, match="mounted"):
        check_target("/dev/sdb", mounts, "/dev/mmcblk0p2")
    with pytest.raises(FlashError, match="running system"):
        check_target("/dev/mmcblk0", mounts, "/dev/mmcblk0p2")
    check_target("/dev/sdc", mounts, "/dev/mmcblk0p2")  # an unmounted card is fine


def test_writes_with_progress_and_verifies_by_reading_back(tmp_path: Path) -> None:
    image = build_image(tmp_path / "raspios.img")
    card = tmp_path / "card.bin"  # a file standing in for /dev/sdX (no card reader here)
    card.write_bytes(bytes(80 * MIB))
    seen: list[tuple[int, int]] = []
    digest = write_to_device(image, card, lambda done, total: seen.append((done, total)))
    assert digest == sha(image) and seen[-1] == (image.stat().st_size, image.stat().st_size)
    assert hashlib.sha256(card.read_bytes()[: image.stat().st_size]).hexdigest() == digest


def flash_cli(image: Path, config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`earmark flash IMAGE --config CONFIG ...` as a user runs it."""
    command = [sys.executable, "-m", "hardware.flash", str(image), "--config", str(config), *extra]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)


def flash_with(tmp_path: Path, device_table: str) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    """Flash a fresh image with this `[device]` table (plus an SSH key) and a stand-in wheel."""
    image = build_image(tmp_path / "raspios.img")
    wheel = tmp_path / "earmark-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    config = tmp_path / "device-config.toml"
    config.write_text(f'[device]\n{device_table}ssh_public_key = "{CONFIG.ssh_public_key}"\n')
    return image, config, flash_cli(image, config, "--wheel", str(wheel))


def test_the_command_line(tmp_path: Path) -> None:
    image, config, ok = flash_with(
        tmp_path,
        'hostname = "kitchen-speaker"\n'
        'device_id = "kitchen-1"\nhousehold_id = "h-42"\nbroker_url = "mqtt://192.0.2.10:1883"\n'
        'device_password = "pw"\n'
        f'consent_public_key = """{CONSENT_PUBLIC_KEY}"""\n',
    )
    assert ok.returncode == 0, ok.stderr
    assert "kitchen-speaker" in read_file(tmp_path / "raspios.earmark.img", "user-data")
    config.write_text('[device]\nhostname = "Not A Hostname!"\n')
    bad = flash_cli(image, config)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "earmark flash: error:" in bad.stderr


def test_home_assistant_mode_is_chosen_at_flash_time_and_switched_by_one_line(tmp_path: Path) -> None:
    table = 'hostname = "living-room"\nmode = "home_assistant"\narea = "Living Room"\n'
    image, config, done = flash_with(tmp_path, table)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "raspios.earmark.img"
    settings_file = tmp_path / "device.toml"
    settings_file.write_text(read_file(out, "earmark/device.toml"))
    speaker = load_settings(SpeakerSettings, settings_file)
    assert speaker.mode is DeviceMode.HOME_ASSISTANT and speaker.identity is None
    satellite = speaker.satellite
    assert (satellite.name, satellite.area, satellite.port) == ("living-room", "Living Room", 10700)
    listing = subprocess.run([need("mdir"), "-b", "-i", f"{out}@@{boot_partition_offset(out)}", "::earmark"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "credentials.env" not in listing and "consent.pub" not in listing, "nothing of the cloud's"

    # A cloud speaker switches with one line and a restart; its identity is already there.
    cloud_file = tmp_path / "cloud.toml"
    cloud_file.write_text(render(CONFIG)["earmark/device.toml"].replace('mode = "cloud"', 'mode = "home_assistant"'))
    switched = load_settings(SpeakerSettings, cloud_file)
    assert switched.mode is DeviceMode.HOME_ASSISTANT and switched.identity is not None

    config.write_text(f'[device]\nhostname = "kitchen"\nssh_public_key = "{CONFIG.ssh_public_key}"\n')
    bad = flash_cli(image, config)
    assert bad.returncode == 2
    assert "mode 'cloud' needs device_id, household_id, broker_url, device_password, consent_public_key" in bad.stderr


def test_a_value_with_a_newline_cannot_add_a_setting() -> None:
    sneaky = CONFIG.model_copy(update={"mode": DeviceMode.HOME_ASSISTANT, "area": 'Kitchen"\n[gpio]\nenabled = false'})
    device = tomllib.loads(render(sneaky)["earmark/device.toml"])
    assert device["satellite"]["area"] == sneaky.area and device["gpio"] == {"enabled": True}


def test_only_a_block_device_is_written_and_a_file_needs_image_out(tmp_path: Path) -> None:
    image, config, ok = flash_with(
        tmp_path,
        'hostname = "kitchen-speaker"\n'
        'device_id = "kitchen-1"\nhousehold_id = "h-42"\nbroker_url = "mqtt://192.0.2.10:1883"\n'
        'device_password = "p\\"w\\\\1"\n'
        f'consent_public_key = """{CONSENT_PUBLIC_KEY}"""\n',
    )
    assert ok.returncode == 0, ok.stderr
    configured = tmp_path / "raspios.earmark.img"
    # A password with a quote and a backslash stays one quoted systemd value.
    assert read_file(configured, "earmark/credentials.env") == 'EARMARK_MQTT__PASSWORD="p\\"w\\\\1"\n'
    configured.unlink()
    wheel = tmp_path / "earmark-0.1.0-py3-none-any.whl"
    typo = tmp_path / "nodir" / "sdq"
    missing = flash_cli(image, config, "--wheel", str(wheel), "--device", str(typo))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert f"{typo}: no such device" in missing.stderr
    plain = tmp_path / "card.img"
    plain.write_bytes(b"")
    not_block = flash_cli(image, config, "--wheel", str(wheel), "--device", str(plain))
    assert not_block.returncode == 2 and "is not a block device; to write the image to a file, use --image-out" in (
        not_block.stderr
    )
    # Nothing was written anywhere: no stray file, no configured image, the file untouched.
    assert not typo.parent.exists() and not configured.exists() and plain.read_bytes() == b""
    out = tmp_path / "for-the-card.img"
    explicit = flash_cli(image, config, "--wheel", str(wheel), "--image-out", str(out))
    assert explicit.returncode == 0, explicit.stderr
    assert "kitchen-speaker" in read_file(out, "user-data")


def leftovers(folder: Path) -> list[str]:
    """What earmark flash made beside its output and should have removed."""
    return sorted(path.name for path in folder.iterdir() if path.name.startswith(".earmark-"))


def test_the_wheel_it_builds_is_removed_after_a_failed_run_and_a_good_one(tmp_path: Path) -> None:
    image = build_image(tmp_path / "raspios.img")
    packed = tmp_path / "raspios.img.xz"  # passes the quick checks; its damage shows after unpacking
    packed.write_bytes(lzma.compress(image.read_bytes()[: 20 * MIB], preset=0))
    config = tmp_path / "device-config.toml"
    config.write_text(
        f'[device]\nhostname = "hall"\nmode = "home_assistant"\nssh_public_key = "{CONFIG.ssh_public_key}"\n'
    )
    failed = flash_cli(packed, config)  # no --wheel: one is built from this checkout first
    assert failed.returncode == 2 and f"{packed}: truncated" in failed.stderr, failed.stderr
    assert leftovers(tmp_path) == [] and not (tmp_path / "raspios.earmark.img").exists()
    done = flash_cli(image, config)
    assert done.returncode == 0, done.stderr
    listing = subprocess.run([need("mdir"), "-b", "-i", f"{tmp_path / 'raspios.earmark.img'}@@{BOOT_START * 512}",
                              "::earmark"], capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "earmark-0.1.0-py3-none-any.whl" in listing
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ('device_password = "two\\nlines"\n', "device.device_password"),
        ('[device.wifi]\nssid = "Home"\npassword = "short"\n', "device.wifi.password"),
        ('[device.wifi]\nssid = "Ho\\nme"\npassword = "long enough"\n', "device.wifi.ssid"),
    ],
)
def test_a_bad_value_is_refused_by_its_name(tmp_path: Path, table: str, named: str) -> None:
    base = f'hostname = "kitchen-speaker"\nmode = "home_assistant"\nssh_public_key = "{CONFIG.ssh_public_key}"\n'
    image = build_image(tmp_path / "raspios.img")
    config = tmp_path / "device-config.toml"
    config.write_text(f"[device]\n{base}{table}")
    bad = flash_cli(image, config, "--wheel", str(tmp_path / "earmark-0.1.0-py3-none-any.whl"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert named in bad.stderr


def test_the_speaker_wheel_holds_only_what_a_speaker_runs(tmp_path: Path) -> None:
    with temporary_wheel(tmp_path) as wheel, zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    packages = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert packages == {"earmark", "contract", "firmware", "hardware"}
    # The measuring code stays in the checkout: benchmarks, the reference model, the LiteRT shim.
    assert not [n for n in names if re.search(r"bench|litert_shim|reference_wake|speaker_bench", n)]
    # What the speaker needs is in it: the sample, the sentences, the unit, install.sh.
    for needed in ("firmware/samples/", "firmware/assistant/sentences/en.yaml", "hardware/install.sh",
                   "hardware/systemd/earmark-speaker.service", "earmark/cli.py"):  # fmt: skip
        assert any(n.startswith(needed) for n in names), needed
    assert "earmark = earmark.cli:main" in entry_points and "earmark-speaker = hardware.speaker:main" in entry_points
