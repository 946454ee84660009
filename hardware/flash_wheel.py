"""The earmark wheel a speaker installs at first boot, built from this checkout.

It holds only what a speaker runs: the launcher, `contract`, `firmware` and `hardware`.
The cloud (`pipeline`, `review_opt_out`), the measuring code (`scripts/`), the tests and
the documentation stay behind, so a speaker carries no server code it could be talked
into running, and its `earmark pipeline` says the cloud is not installed there.

`earmark flash` builds it in a hidden folder beside the output image and removes that
folder whatever happens: a successful run, a failed one, or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from contract.config import ConfigError
from hardware.flash_image import FlashError

WHEEL_FOLDER_PREFIX = ".earmark-wheel-"
SPEAKER_PACKAGES = ("earmark", "contract", "firmware", "hardware")
# At the top of the checkout, beside the packages, only what building needs.
_BUILD_FILES = ("pyproject.toml", "README.md", "LICENSE")


def _build_into(folder: Path) -> Path:
    """Build the wheel into the empty `folder` (the Pi installs its dependencies from PyPI)."""
    source = Path(__file__).resolve().parent.parent
    if not (source / "pyproject.toml").is_file():
        raise ConfigError("not running from a source checkout: pass --wheel earmark-*.whl")
    # Built from a copy: setuptools' in-tree build/ keeps modules deleted since the last
    # build, and they would ship to the speaker. Hidden folders (.git, virtual
    # environments, caches) hold nothing a wheel needs and can be hundreds of MB.
    tree = folder / "src"
    tree.mkdir()
    for name in _BUILD_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, tree / name)
    for package in SPEAKER_PACKAGES:
        shutil.copytree(source / package, tree / package, ignore=shutil.ignore_patterns(".*", "__pycache__"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(folder), str(tree)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    shutil.rmtree(tree, ignore_errors=True)
    wheels = list(folder.glob("earmark-*.whl"))
    if done.returncode != 0 or not wheels:
        raise FlashError(f"could not build the earmark wheel: {done.stderr.strip()[-300:]}")
    return wheels[0]


def build_wheel(where: Path) -> Path:
    """A wheel of this checkout, in a new folder under `where` that the caller removes.

    Prefer `temporary_wheel`, which removes it. A build that fails leaves nothing behind.
    """
    folder = Path(tempfile.mkdtemp(dir=where, prefix=WHEEL_FOLDER_PREFIX))
    try:
        return _build_into(folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


@contextlib.contextmanager
def temporary_wheel(where: Path, build: Callable[[Path], Path] = _build_into) -> Iterator[Path]:
    """A wheel of this checkout (`build` fills an empty folder), whose folder under `where`
    is removed on leaving, whatever happened."""
    with tempfile.TemporaryDirectory(dir=where, prefix=WHEEL_FOLDER_PREFIX) as folder:
        yield build(Path(folder))
