"""Native libraries' own stderr lines, filtered: C code writes to file descriptor 2
directly, past Python's logging, and some of it is noise a person must not wade through.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def filtered(keep: Callable[[str], bool]) -> Iterator[None]:
    """While inside, what native code writes to stderr is held; on leaving, the lines
    `keep` accepts are written out (nothing is lost to a failure inside: they still are)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode(errors="replace").splitlines(keepends=True):
                if keep(line):
                    sys.stderr.write(line)
            sys.stderr.flush()
