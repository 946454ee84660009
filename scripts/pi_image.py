"""A blank disk image laid out as Raspberry Pi OS lays its images out, for `earmark flash`.

An MBR with a FAT boot partition at 4 MiB holding `config.txt`, and a Linux partition
after it. The flashing tests and the arm64 stand-in both configure one; no Pi OS image
can be downloaded here.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

MIB = 1 << 20
BOOT_START_SECTORS = 8192  # 4 MiB, as in Raspberry Pi OS images
BOOT_SECTORS = 65536  # 32 MiB
IMAGE_MIB = 64


def tool(name: str) -> str:
    """The path of a system tool, or a clear error naming its package."""
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if found is None:
        raise FileNotFoundError(f"{name} is missing: apt-get install mtools dosfstools")
    return found


def blank_pi_image(path: Path, config_txt: Path) -> Path:
    """Write the image to `path`, with `config_txt` as the boot partition's config.txt."""
    fat = path.with_suffix(".fat")
    subprocess.run(
        [tool("mkfs.vfat"), "-C", "-n", "bootfs", str(fat), str(BOOT_SECTORS // 2)], check=True, capture_output=True
    )
    subprocess.run([tool("mcopy"), "-i", str(fat), str(config_txt), "::config.txt"], check=True)
    image = bytearray(IMAGE_MIB * MIB)
    entries = [
        (0x0C, BOOT_START_SECTORS, BOOT_SECTORS),
        (0x83, BOOT_START_SECTORS + BOOT_SECTORS, IMAGE_MIB * 2048 - BOOT_START_SECTORS - BOOT_SECTORS),
    ]
    for index, (kind, start, count) in enumerate(entries):
        image[446 + 16 * index : 446 + 16 * (index + 1)] = struct.pack(
            "<B3sB3sII", 0, b"\0\0\0", kind, b"\0\0\0", start, count
        )
    image[510:512] = b"\x55\xaa"
    offset = BOOT_START_SECTORS * 512
    image[offset : offset + fat.stat().st_size] = fat.read_bytes()
    path.write_bytes(bytes(image))
    fat.unlink()
    return path
