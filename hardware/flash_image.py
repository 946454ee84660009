"""A configured copy of a Raspberry Pi OS image, made without mounting anything.

mtools reads and writes the FAT boot partition inside the image file. The image is
checked first (partition table, FAT boot sector, size); every error names the image
the user gave, never the working copy, and only a fully configured image ever appears
under the output name.
"""

from __future__ import annotations

import lzma
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from contract.config import ConfigError
from contract.errors import EarmarkError
from hardware.flash_config import FlashConfig
from hardware.flash_files import render

_FAT_TYPES = {0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E}
_XZ_MAGIC = b"\xfd7zXZ\x00"
SECTOR = 512


class FlashError(EarmarkError):
    """The image or the target disk cannot be used."""

    code = "flash"


def boot_partition_offset(image: Path, shown_as: Path | None = None) -> int:
    """Byte offset of the first FAT partition, after checking the image is whole.

    Errors name `shown_as` (default `image`): the user's file when `image` is a working copy.
    """
    name = image if shown_as is None else shown_as
    size = image.stat().st_size
    if size < SECTOR:
        raise FlashError(f"{name}: too small to be a disk image ({size} bytes)")
    with open(image, "rb") as handle:
        mbr = handle.read(SECTOR)
        if mbr[510:512] != b"\x55\xaa":
            raise FlashError(f"{name}: no partition table (not a Raspberry Pi OS image, or corrupt)")
        for index in range(4):
            entry = mbr[446 + 16 * index : 446 + 16 * (index + 1)]
            part_type = entry[4]
            start, count = (int(v) for v in struct.unpack("<II", entry[8:16]))
            if part_type not in _FAT_TYPES or count == 0:
                continue
            offset = start * SECTOR
            if offset + count * SECTOR > size:
                raise FlashError(f"{name}: truncated (the boot partition ends past the end of the file)")
            handle.seek(offset)
            boot = handle.read(SECTOR)
            if boot[510:512] != b"\x55\xaa" or (b"FAT" not in boot[0x36:0x3E] and b"FAT32" not in boot[0x52:0x5A]):
                raise FlashError(f"{name}: the boot partition holds no FAT file system (corrupt image)")
            return offset
    raise FlashError(f"{name}: no FAT boot partition in the partition table")


def check_image(image: Path) -> None:
    """Refuse, in a moment and naming it, an image that is missing, unreadable or not an image.

    A `.img` is checked whole (partition table and boot sector); a `.xz` by its header
    here, and whole once unpacked.
    """
    try:
        with open(image, "rb") as handle:
            head = handle.read(len(_XZ_MAGIC))
    except FileNotFoundError:
        raise FlashError(f"{image}: no such image") from None
    except IsADirectoryError:
        raise FlashError(f"{image}: a directory, not an image file") from None
    except OSError as err:
        raise FlashError(f"{image}: cannot be read ({err.strerror or err})") from err
    if image.suffix == ".xz":
        if head != _XZ_MAGIC:
            raise FlashError(f"{image}: not an .xz file (corrupt, or named .xz by mistake)")
    else:
        boot_partition_offset(image)


def _mtools(*args: str, work: Path, image: Path) -> None:
    """Run an mtools command on the working copy `work`; its errors name `image`."""
    binary = shutil.which(args[0])
    if binary is None:
        raise ConfigError(f"{args[0]} is missing: run `sudo apt-get install mtools`")
    done = subprocess.run([binary, *args[1:]], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip()).replace(str(work), str(image))
        raise FlashError(f"{image}: {args[0]} failed: {said}")


def _unpack(image: Path, work: Path, progress: Callable[[int, int], None] | None) -> None:
    """Copy `image` to `work`, unpacking a `.xz`; `progress(done, total)` follows the compressed bytes."""
    if image.suffix != ".xz":
        shutil.copyfile(image, work)
        return
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
    output.parent.mkdir(parents=True, exist_ok=True)
    check_image(image)
    with tempfile.NamedTemporaryFile(dir=output.parent, prefix=".earmark-flash-", delete=False) as tmp:
        work = Path(tmp.name)
    try:
        _unpack(image, work, progress)
        target = f"{work}@@{boot_partition_offset(work, shown_as=image)}"
        with tempfile.TemporaryDirectory() as staging:
            _mtools("mmd", "-D", "s", "-i", target, "::earmark", work=work, image=image)  # -D s: skip if it exists
            for name, content in render(config).items():
                local = Path(staging) / name.replace("/", "_")
                local.write_text(content)
                _mtools("mcopy", "-o", "-i", target, str(local), f"::{name}", work=work, image=image)
            if wheel is not None:
                _mtools("mcopy", "-o", "-i", target, str(wheel), f"::earmark/{wheel.name}", work=work, image=image)
        work.replace(output)  # only a fully configured image ever appears under the output name
        return output
    finally:
        work.unlink(missing_ok=True)
