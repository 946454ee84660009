"""Small device state files that must survive a power cut whole (mute, last consent seen)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, text: str) -> None:
    """Write (0600 from the first byte), fsync, then rename over `path`: a reader sees the
    old file or the new one. The temporary file's name is unique: the service and a CLI
    may write the same state at once, and must not interleave in one temporary file.

    Run as root (a household's `sudo earmark device …`), the file is given the state
    directory's owner, so the service that owns the directory can still read it."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if os.geteuid() == 0:
            owner = path.parent.stat()
            os.chown(tmp, owner.st_uid, owner.st_gid)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
