"""`earmark-flash`: put a device's first-boot configuration into a Raspberry Pi OS image.

Raspberry Pi OS (Bookworm and later) runs cloud-init from the FAT boot partition:
`user-data` (hostname, user, SSH key, first-boot commands) and `network-config` (Wi-Fi).
This writes those plus `earmark/device.toml` and `earmark/credentials.toml` into the
image *without mounting anything* (mtools reads and writes FAT inside the file), and
can then write the image to an SD card with a progress bar and read-back verification.

It checks the image first (partition table, FAT boot sector, size) and refuses a disk
that is mounted or holds the running system. On any error nothing is written.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from contract import topics
from contract.cli import OneLineParser, entry, prog_name
from contract.config import ConfigError, one_line
from contract.errors import EarmarkError, report
from firmware.satellite.settings import DeviceMode

_FAT_TYPES = {0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E}
SECTOR = 512


class FlashError(EarmarkError):
    """The image or the target disk cannot be used."""

    code = "flash"


class WifiSettings(BaseModel):
    """The network the speaker joins."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ssid: str = Field(min_length=1, max_length=32, pattern=r"^[^\x00-\x1f\x7f]+$")
    # WPA2: a passphrase of 8-63 printable ASCII characters, or 64 hex digits.
    password: SecretStr = Field(min_length=8, max_length=64)
    country: str = Field("GB", pattern=r"^[A-Z]{2}$")

    @field_validator("password")
    @classmethod
    def _wpa_passphrase(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        if not (re.fullmatch(r"[ -~]{8,63}", text) or re.fullmatch(r"[0-9a-fA-F]{64}", text)):
            raise ValueError("must be 8-63 printable ASCII characters (or 64 hex digits)")
        return value


class FlashConfig(BaseModel):
    """Everything a new speaker needs to come up: enroll with the Earmark cloud, or serve
    the household's Home Assistant (then the cloud fields may be left out)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hostname: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    ssh_public_key: str = Field(pattern=r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp\d+) [A-Za-z0-9+/=]+( .*)?$")
    mode: DeviceMode = Field(DeviceMode.CLOUD, description="cloud, or home_assistant (a Wyoming satellite)")
    area: str | None = Field(None, max_length=63, description="home_assistant mode: the area Home Assistant suggests")
    device_id: topics.SafeId | None = None
    household_id: topics.SafeId | None = None
    broker_url: str | None = Field(None, pattern=r"^mqtts?://[^/:]+(:\d+)?$")
    device_password: SecretStr | None = None
    ca_certificate: str | None = Field(None, description="PEM of the broker's CA, for mqtts")
    consent_public_key: str | None = Field(
        None,
        pattern=r"^-----BEGIN PUBLIC KEY-----\n[A-Za-z0-9+/=\n]+-----END PUBLIC KEY-----\n?$",
        description="PEM the consent service signs with (`earmark-review setup` prints where it is)",
    )
    wifi: WifiSettings | None = None
    username: str = Field("earmark-admin", pattern=r"^[a-z][a-z0-9-]{0,31}$")
    audio: Literal["usb", "respeaker-2mic-v1", "respeaker-2mic-v2"] = "usb"

    @field_validator("device_password")
    @classmethod
    def _one_printable_line(cls, value: SecretStr | None) -> SecretStr | None:
        # It becomes one line of a systemd EnvironmentFile: no line break may add another.
        if value is not None and not re.fullmatch(r"[!-~]{1,256}", value.get_secret_value()):
            raise ValueError("must be 1-256 printable ASCII characters without spaces")
        return value

    @model_validator(mode="after")
    def _cloud_needs_its_fields(self) -> FlashConfig:
        if self.mode is DeviceMode.CLOUD:
            missing = [f for f in _CLOUD_FIELDS if getattr(self, f) is None]
            if missing:
                raise ValueError(f"mode 'cloud' needs {', '.join(missing)} (or set mode = \"home_assistant\")")
        return self


_CLOUD_FIELDS = ("device_id", "household_id", "broker_url", "device_password", "consent_public_key")


class _FlashFile(BaseModel):
    """The TOML file `earmark-flash --config` reads."""

    model_config = ConfigDict(extra="forbid")

    device: FlashConfig


def _env_quoted(secret: SecretStr) -> str:
    """A value for a systemd EnvironmentFile, in double quotes with `\\` and `"` escaped."""
    escaped = secret.get_secret_value().replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _toml_str(value: str) -> str:
    """A TOML basic string; control characters escaped, so a value can never add a line."""
    escaped = "".join(
        "\\" + c if c in '"\\' else f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in value
    )
    return f'"{escaped}"'


def _device_toml(config: FlashConfig) -> str:
    """The speaker's settings. Whatever cloud fields were given are written in either mode,
    so switching mode later is one line of this file and a restart, never a reflash."""
    lines = [
        f'mode = "{config.mode.value}"',
        'input = "mic"',
        'device = "earmark"  # the ALSA capture device install.sh defines',
        'state_dir = "/var/lib/earmark"',
    ]
    if config.consent_public_key:
        lines.append('consent_public_key = "/etc/earmark/consent.pub"')
    if config.device_id and config.household_id:
        lines += [
            "[identity]",
            f"device_id = {_toml_str(config.device_id)}",
            f"household_id = {_toml_str(config.household_id)}",
        ]
    if config.broker_url:
        host, _, port = config.broker_url.split("://", 1)[1].partition(":")
        tls = config.broker_url.startswith("mqtts://")
        lines += [
            "[mqtt]",
            f"host = {_toml_str(host)}",
            f"port = {int(port) if port else (8883 if tls else 1883)}",
            *([f"username = {_toml_str(config.device_id)}"] if config.device_id else []),
            f"tls = {'true' if tls else 'false'}",
            *(['ca_file = "/etc/earmark/ca.pem"'] if config.ca_certificate else []),
        ]
    lines += [
        "[frontend]",
        "preroll_seconds = 1.5",
        "[satellite]",
        f"name = {_toml_str(config.hostname)}",
        *([f"area = {_toml_str(config.area)}"] if config.area else []),
        "[gpio]",
        "enabled = true",
        "",
    ]
    return "\n".join(lines)


def render(config: FlashConfig) -> dict[str, str]:
    """The files to put on the boot partition, by path."""
    files = {
        "user-data": "\n".join(
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
        ),
        "earmark/device.toml": _device_toml(config),
        "earmark/install.sh": (Path(__file__).parent / "install.sh").read_text(),
    }
    if config.device_password is not None:
        # Kept apart: install.sh moves it to a root-only file and shreds it from the FAT partition.
        files["earmark/credentials.env"] = f"EARMARK_MQTT__PASSWORD={_env_quoted(config.device_password)}\n"
    if config.ca_certificate:
        files["earmark/ca.pem"] = config.ca_certificate
    if config.consent_public_key:
        files["earmark/consent.pub"] = config.consent_public_key
    if config.wifi is not None:
        files["network-config"] = "\n".join(
            [
                "network:",
                "  version: 2",
                "  wifis:",
                "    wlan0:",
                "      dhcp4: true",
                "      optional: true",
                f"      regulatory-domain: {config.wifi.country}",
                "      access-points:",
                f"        {_toml_str(config.wifi.ssid)}:",
                f"          password: {_toml_str(config.wifi.password.get_secret_value())}",
                "",
            ]
        )
    return files


def boot_partition_offset(image: Path) -> int:
    """Byte offset of the first FAT partition, after checking the image is whole."""
    size = image.stat().st_size
    if size < SECTOR:
        raise FlashError(f"{image}: too small to be a disk image ({size} bytes)")
    with open(image, "rb") as handle:
        mbr = handle.read(SECTOR)
        if mbr[510:512] != b"\x55\xaa":
            raise FlashError(f"{image}: no partition table (not a Raspberry Pi OS image, or corrupt)")
        for index in range(4):
            entry = mbr[446 + 16 * index : 446 + 16 * (index + 1)]
            part_type = entry[4]
            start, count = (int(v) for v in struct.unpack("<II", entry[8:16]))
            if part_type not in _FAT_TYPES or count == 0:
                continue
            offset = start * SECTOR
            if offset + count * SECTOR > size:
                raise FlashError(f"{image}: truncated (the boot partition ends past the end of the file)")
            handle.seek(offset)
            boot = handle.read(SECTOR)
            if boot[510:512] != b"\x55\xaa" or (b"FAT" not in boot[0x36:0x3E] and b"FAT32" not in boot[0x52:0x5A]):
                raise FlashError(f"{image}: the boot partition holds no FAT file system (corrupt image)")
            return offset
    raise FlashError(f"{image}: no FAT boot partition in the partition table")


def _mtools(*args: str) -> None:
    binary = shutil.which(args[0])
    if binary is None:
        raise ConfigError(f"{args[0]} is missing: run `sudo apt-get install mtools`")
    done = subprocess.run([binary, *args[1:]], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise FlashError(f"{args[0]} failed: {done.stderr.strip() or done.stdout.strip()}")


def configure_image(
    image: Path,
    output: Path,
    config: FlashConfig,
    wheel: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write the first-boot files (and the earmark wheel) into a copy of `image` at `output`.

    `progress(done, total)` follows the unpacking of a `.xz` image (compressed bytes read).
    """
    if not image.is_file():
        raise FlashError(f"{image}: no such image")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=output.parent, prefix=".earmark-flash-", delete=False) as tmp:
        work = Path(tmp.name)
    try:
        if image.suffix == ".xz":
            try:
                total = image.stat().st_size
                with open(image, "rb") as raw, lzma.LZMAFile(raw) as src, open(work, "wb") as dst:
                    while block := src.read(4 << 20):
                        dst.write(block)
                        if progress is not None:
                            progress(raw.tell(), total)
                if progress is not None:
                    progress(total, total)
            except (lzma.LZMAError, EOFError) as err:
                raise FlashError(f"{image}: corrupt or truncated .xz ({err})") from err
        else:
            shutil.copyfile(image, work)
        offset = boot_partition_offset(work)
        target = f"{work}@@{offset}"
        with tempfile.TemporaryDirectory() as staging:
            _mtools("mmd", "-D", "s", "-i", target, "::earmark")  # -D s: skip if it exists
            for name, content in render(config).items():
                local = Path(staging) / name.replace("/", "_")
                local.write_text(content)
                _mtools("mcopy", "-o", "-i", target, str(local), f"::{name}")
            if wheel is not None:
                _mtools("mcopy", "-o", "-i", target, str(wheel), f"::earmark/{wheel.name}")
        work.replace(output)  # only a fully configured image ever appears under the output name
        return output
    finally:
        work.unlink(missing_ok=True)


def _disk_of(device: str) -> str:
    """The whole-disk name of a block device or partition (sda1 -> sda, mmcblk0p2 -> mmcblk0)."""
    name = Path(os.path.realpath(device)).name
    sys_block = Path("/sys/class/block") / name
    if sys_block.exists():
        return sys_block.resolve().parent.name if (sys_block / "partition").exists() else name
    # Not on this machine (or a name from a mount table): use the kernel's naming rules.
    numbered = re.fullmatch(r"((?:mmcblk|nvme\d+n|loop)\d+)(?:p\d+)?", name)
    if numbered:
        return numbered.group(1)
    lettered = re.fullmatch(r"([a-z]+)\d*", name)
    return lettered.group(1) if lettered else name


def check_block_device(device: str) -> None:
    """Refuse anything but an existing block device: a typo must not become a 1 GiB file."""
    try:
        mode = os.stat(device).st_mode
    except FileNotFoundError:
        raise FlashError(f"{device}: no such device; `lsblk` lists the cards this machine sees") from None
    if not stat.S_ISBLK(mode):
        raise FlashError(f"{device} is not a block device; to write the image to a file, use --image-out FILE")


def check_target(device: str, mounts: str, root_source: str) -> None:
    """Refuse a disk that is mounted anywhere or holds the running system."""
    disk = _disk_of(device)
    if _disk_of(root_source) == disk:
        raise FlashError(f"{device} holds the running system; refusing to overwrite it")
    for line in mounts.splitlines():
        source = line.split(" ", 1)[0]
        if source.startswith("/dev/") and _disk_of(source) == disk:
            raise FlashError(f"{device} is mounted ({source}); unmount it first")


def write_to_device(image: Path, device: Path, progress: Callable[[int, int], None]) -> str:
    """Copy the image to the device, fsync, read it back and compare SHA-256; return the digest."""
    total = image.stat().st_size
    written = 0
    digest = hashlib.sha256()
    # "r+b" never creates: only something that already exists is written.
    with open(image, "rb") as src, open(device, "r+b") as dst:
        while block := src.read(4 << 20):
            dst.write(block)
            digest.update(block)
            written += len(block)
            progress(written, total)
        dst.flush()
        os.fsync(dst.fileno())
    check = hashlib.sha256()
    with open(device, "rb") as back:
        remaining = total
        while remaining and (block := back.read(min(4 << 20, remaining))):
            check.update(block)
            remaining -= len(block)
    if check.hexdigest() != digest.hexdigest():
        raise FlashError(f"{device}: read-back verification failed; the card may be faulty")
    return digest.hexdigest()


def build_wheel(where: Path) -> Path:
    """A wheel of this checkout, for first-boot install (the Pi installs its deps from PyPI)."""
    source = Path(__file__).resolve().parent.parent
    if not (source / "pyproject.toml").is_file():
        raise ConfigError("not running from a source checkout: pass --wheel earmark-*.whl")
    out = Path(tempfile.mkdtemp(dir=where, prefix=".earmark-wheel-"))
    # Built from a copy: setuptools' in-tree build/ keeps modules deleted since the last
    # build, and they would ship to the speaker.
    tree = out / "src"
    shutil.copytree(
        source,
        tree,
        ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", "reports", "tests"),
    )
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(tree)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    shutil.rmtree(tree, ignore_errors=True)
    wheels = list(out.glob("earmark-*.whl"))
    if done.returncode != 0 or not wheels:
        raise FlashError(f"could not build the earmark wheel: {done.stderr.strip()[-300:]}")
    return wheels[0]


def progress_bar(label: str) -> Callable[[int, int], None]:
    """A one-line bar on stderr: `label [####....]  42% 512/1210 MB`."""

    def draw(done: int, total: int) -> None:
        width = 40
        filled = width * done // max(total, 1)
        end = "\n" if done >= total else ""
        share = 100 * done // max(total, 1)
        bar = f"[{'#' * filled}{'.' * (width - filled)}] {share:3d}% {done >> 20}/{total >> 20} MB"
        print(f"\r{label} {bar}", end=end, file=sys.stderr, flush=True)  # noqa: T201 - progress for a person

    return draw


def _root_source() -> str:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        source, mountpoint = line.split(" ")[:2]
        if mountpoint == "/":
            return source
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `earmark-flash`."""
    return entry("earmark-flash", _main, argv)


def _main(argv: list[str]) -> int:
    parser = OneLineParser(prog=prog_name("earmark-flash"), description=__doc__.split("\n")[0])
    parser.add_argument("image", type=Path, help="Raspberry Pi OS Lite .img or .img.xz")
    parser.add_argument("--config", type=Path, required=True, help="TOML with a [device] table (see README)")
    parser.add_argument(
        "--image-out",
        "--output",
        dest="output",
        type=Path,
        help="write the configured image to this file (default: IMAGE without .xz, + .earmark.img)",
    )
    parser.add_argument(
        "--device", help="also write to this SD card's block device, e.g. /dev/sdb (all data on it is lost)"
    )
    parser.add_argument("--wheel", type=Path, help="earmark wheel to install at first boot (default: build one)")
    args = parser.parse_args(argv)
    try:
        if not args.config.is_file():
            raise ConfigError(f"{args.config}: no such config file")
        import tomllib

        try:
            flash_file = _FlashFile.model_validate(tomllib.loads(args.config.read_text()))
        except ValidationError as err:
            raise ConfigError(f"{args.config}: {one_line(err)}") from err
        except (tomllib.TOMLDecodeError, ValueError) as err:
            raise ConfigError(f"{args.config}: {str(err).splitlines()[0]}") from err
        stem = args.image.name.removesuffix(".xz").removesuffix(".img")
        output = args.output or args.image.with_name(f"{stem}.earmark.img")
        if args.device:
            check_block_device(args.device)
            check_target(args.device, Path("/proc/self/mounts").read_text(), _root_source())
        wheel = args.wheel or build_wheel(output.parent)
        configure_image(args.image, output, flash_file.device, wheel, progress_bar("unpacking"))
        print(f"configured {output}", file=sys.stderr)  # noqa: T201
        if args.device:
            digest = write_to_device(output, Path(args.device), progress_bar("writing"))
            print(f"wrote and verified {args.device} (sha256 {digest[:16]}…)", file=sys.stderr)  # noqa: T201
        return 0
    except EarmarkError as err:
        return report(prog_name("earmark-flash"), err)


if __name__ == "__main__":
    raise SystemExit(main())
