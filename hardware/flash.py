"""`earmark flash`: put a device's first-boot configuration into a Raspberry Pi OS image.

Raspberry Pi OS (Bookworm and later) runs cloud-init from the FAT boot partition:
`user-data` (hostname, user, SSH key, first-boot commands) and `network-config` (Wi-Fi).
This writes those plus `earmark/device.toml` and the broker credentials into the
image *without mounting anything* (mtools reads and writes FAT inside the file), and
can then write the image to an SD card with a progress bar and read-back verification.

Every input is checked before any slow work starts (the config, the image, the wheel,
the card); the image is checked whole (partition table, FAT boot sector, size), and a
disk that is mounted or holds the running system is refused. On any error nothing is
written and nothing is left behind.

The parts, one job each: `flash_config` (the `[device]` table), `flash_files` (the
files it becomes), `flash_image` (editing the image), `flash_card` (writing a card),
`flash_wheel` (the wheel the speaker installs). This module is their public face.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from contract.cli import OneLineParser, entry
from contract.config import ConfigError
from contract.errors import EarmarkError, report
from hardware.flash_card import check_block_device, check_card, check_target, write_to_device
from hardware.flash_config import FlashConfig, WifiSettings, load_flash_config
from hardware.flash_files import device_settings, device_toml, render
from hardware.flash_image import SECTOR, FlashError, boot_partition_offset, check_image, configure_image
from hardware.flash_wheel import build_wheel, temporary_wheel

__all__ = [
    "SECTOR",
    "FlashConfig",
    "FlashError",
    "WifiSettings",
    "boot_partition_offset",
    "build_wheel",
    "check_block_device",
    "check_image",
    "check_target",
    "configure_image",
    "device_settings",
    "device_toml",
    "load_flash_config",
    "main",
    "progress_bar",
    "render",
    "temporary_wheel",
    "write_to_device",
]


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


def main(argv: Sequence[str] | None = None, prog: str = "earmark flash") -> int:
    """Entry point of `earmark flash` (`prog`: the name it reports under)."""
    return entry(prog, lambda args: _main(args, prog), argv)


def _main(argv: list[str], prog: str) -> int:
    parser = OneLineParser(prog=prog, description=__doc__.split("\n")[0])
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
        # Everything a person can get wrong is checked first, in a moment: building the
        # wheel and unpacking the image take a while.
        config = load_flash_config(args.config)
        check_image(args.image)
        if args.wheel is not None and not args.wheel.is_file():
            raise ConfigError(f"--wheel {args.wheel}: no such file")
        stem = args.image.name.removesuffix(".xz").removesuffix(".img")
        output: Path = args.output or args.image.with_name(f"{stem}.earmark.img")
        if args.device:
            check_card(args.device)
        output.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            wheel = args.wheel or stack.enter_context(temporary_wheel(output.parent))
            configure_image(args.image, output, config, wheel, progress_bar("unpacking"))
        print(f"configured {output}", file=sys.stderr)  # noqa: T201
        if args.device:
            digest = write_to_device(output, Path(args.device), progress_bar("writing"))
            print(f"wrote and verified {args.device} (sha256 {digest[:16]}…)", file=sys.stderr)  # noqa: T201
        return 0
    except EarmarkError as err:
        return report(prog, err)


if __name__ == "__main__":
    raise SystemExit(main())
