"""Vosk model management: list installed models, fetch an archive with a SHA-256 check.

    earmark models list [--dir DIR]
    earmark models fetch URL --sha256 HEX [--dir DIR]

The documented English default is vosk-model-small-en-us-0.15 (about 40 MB):
https://alphacephei.com/vosk/models/vosk-model-small-en-us-0.15.zip
Nothing is fetched unless asked; recognition always loads a directory you configure.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

from contract import paths
from contract.cli import OneLineParser, entry
from contract.errors import EarmarkError, report
from pipeline.errors import ModelError

ENGLISH_DEFAULT = "vosk-model-small-en-us-0.15"
ENGLISH_DEFAULT_URL = f"https://alphacephei.com/vosk/models/{ENGLISH_DEFAULT}.zip"
# As published by other installers of this archive; a mismatch fails the fetch loudly.
ENGLISH_DEFAULT_SHA256 = "30f26242c4eb449f948e42cb302dd7a686cb29a3423a8367f99ff41780942498"


def is_vosk_model(path: Path) -> bool:
    """Whether a directory looks like a Vosk model."""
    return path.is_dir() and (path / "am").is_dir() and (path / "conf").is_dir()


def installed(model_dir: Path) -> list[dict[str, object]]:
    """Models under model_dir, with their size."""
    found = []
    for path in sorted(model_dir.expanduser().glob("*")):
        if is_vosk_model(path):
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            found.append({"name": path.name, "path": str(path), "size_mb": round(size / 1e6, 1)})
    return found


def _safe_members(names: list[str]) -> None:
    for name in names:
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts:
            raise ModelError(f"archive member {name!r} would escape the model directory")


class Progress:
    """Bytes so far, of how many, and the rate, on one line of stderr at most 4 times a second."""

    def __init__(self, what: str, total_bytes: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._what, self._total, self._clock = what, total_bytes, clock
        self._started = self._shown = clock()
        self.done_bytes = 0

    def advance(self, size: int) -> None:
        """Count `size` more bytes; redraw if a quarter second has passed."""
        self.done_bytes += size
        now = self._clock()
        if now - self._shown >= 0.25:
            self._shown = now
            self._draw(now, end="")

    def finish(self) -> None:
        """The last line, with a newline."""
        self._draw(self._clock(), end="\n")

    def line(self, now: float) -> str:
        """`what: 12.3 MB of 40.0 MB (31 %), 4.1 MB/s`."""
        rate = self.done_bytes / max(now - self._started, 1e-6) / 1e6
        done = f"{self.done_bytes / 1e6:.1f} MB"
        if self._total:
            share = 100 * self.done_bytes // self._total
            done += f" of {self._total / 1e6:.1f} MB ({share} %)"
        return f"{self._what}: {done}, {rate:.1f} MB/s"

    def _draw(self, now: float, end: str) -> None:
        print(f"\r{self.line(now)}", end=end, file=sys.stderr, flush=True)  # noqa: T201 - progress for a person


def fetch(url: str, sha256: str, model_dir: Path, timeout_seconds: float = 60.0) -> Path:
    """Download an archive, verify its SHA-256, unpack it, and return the model directory."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https", "file") or "://" not in url:
        raise ModelError(f"{url}: not a URL (give the http:// or https:// address of a .zip or .tar.gz)")
    if len(sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha256):
        raise ModelError(f"--sha256 {sha256}: not a SHA-256 (64 hexadecimal digits, as the model's page gives it)")
    model_dir = model_dir.expanduser()
    model_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=model_dir) as tmp:
        archive = Path(tmp) / "archive"
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=timeout_seconds) as response, open(archive, "wb") as out:  # noqa: S310 - the user names the URL
                length = response.headers.get("Content-Length")
                progress = Progress(f"downloading {Path(url).name}", int(length) if length else None)
                while block := response.read(1 << 20):
                    digest.update(block)
                    out.write(block)
                    progress.advance(len(block))
                progress.finish()
        except OSError as err:
            raise ModelError(f"{url}: download failed ({err})") from err
        if digest.hexdigest() != sha256.lower():
            raise ModelError(f"{url}: SHA-256 mismatch (got {digest.hexdigest()}, expected {sha256.lower()})")
        unpacked = Path(tmp) / "unpacked"
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as zf:
                    _safe_members(zf.namelist())
                    zf.extractall(unpacked)  # noqa: S202 - members checked above
            else:
                with tarfile.open(archive) as tf:
                    _safe_members(tf.getnames())
                    tf.extractall(unpacked, filter="data")
        except (zipfile.BadZipFile, tarfile.TarError) as err:
            raise ModelError(f"{url}: not a zip or tar archive ({err})") from err
        candidates = [p for p in [unpacked, *unpacked.iterdir()] if is_vosk_model(p)]
        if not candidates:
            raise ModelError(f"{url}: the archive holds no Vosk model (am/ and conf/)")
        name = candidates[0].name if candidates[0] != unpacked else Path(url).name.split(".")[0]
        target = model_dir / name
        if target.exists():
            shutil.rmtree(target)
        candidates[0].rename(target)
    return target


def main(argv: Sequence[str] | None = None, prog: str = "earmark models") -> int:
    """Entry point of `earmark models` (`prog`: the name it reports under)."""
    return entry(prog, lambda args: _main(args, prog), argv)


def _main(argv: list[str], prog: str) -> int:
    parser = OneLineParser(prog=prog, description="Vosk models")
    parser.add_argument("--dir", type=Path, default=paths.models_dir(), help="where models live (default: DATA/models)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="installed models")
    get = sub.add_parser("fetch", help=f"download and unpack a model archive (e.g. {ENGLISH_DEFAULT_URL})")
    get.add_argument("url")
    get.add_argument("--sha256", required=True, help="expected SHA-256 of the archive")
    sub.add_parser("fetch-default", help=f"fetch {ENGLISH_DEFAULT} (the documented English default)")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            found = installed(args.dir)
            if not found:
                print(  # noqa: T201
                    f"no Vosk models in {args.dir.expanduser()}: `earmark models fetch-default` fetches the English"
                    " one (40 MB), or point --vosk-model at any model directory",
                    file=sys.stderr,
                )
            for model in found:
                print(json.dumps(model))  # noqa: T201
            return 0
        if args.command == "fetch-default":
            path = fetch(ENGLISH_DEFAULT_URL, ENGLISH_DEFAULT_SHA256, args.dir)
        else:
            path = fetch(args.url, args.sha256, args.dir)
        print(json.dumps({"installed": str(path)}))  # noqa: T201
        return 0
    except EarmarkError as err:
        return report(prog, err)


if __name__ == "__main__":
    raise SystemExit(main())
