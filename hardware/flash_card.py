"""Writing a configured image to an SD card: which disks may be written, and the write itself.

Only an existing block device is written, never one that is mounted or holds the
running system; the write is read back and compared before it counts as done.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

from hardware.flash_image import FlashError


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


def root_source() -> str:
    """The device the running system's `/` is mounted from, as the mount table names it."""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        source, mountpoint = line.split(" ")[:2]
        if mountpoint == "/":
            return source
    return ""


def check_card(device: str) -> None:
    """Every check before a card is written: a block device, not mounted, not the system disk."""
    check_block_device(device)
    check_target(device, Path("/proc/self/mounts").read_text(), root_source())


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
