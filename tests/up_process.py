"""`earmark up` as a child process for the tests that keep it running, with everything it
starts (broker, pipeline, app) in a process group of its own, so a failing test leaves
no orphans behind to load the machine for the tests after it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence

from tests.conftest import REPO


def _ctrl_c_as_from_a_terminal() -> None:
    # The tests press Ctrl-C (SIGINT) as a person at a terminal would. A test run started
    # as a background job of a shell without job control ignores SIGINT, and a child
    # inherits that: Python then never raises KeyboardInterrupt and the demo never stops
    # (four tests timed out so, only in such a run). A terminal's demo gets the default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def running_up(args: Sequence[str]) -> Iterator[subprocess.Popen[str]]:
    """`python -m earmark ARGS`, its stdout a pipe of text lines; its whole group ends on leaving."""
    up = subprocess.Popen(
        [sys.executable, "-m", "earmark", *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
        preexec_fn=_ctrl_c_as_from_a_terminal,
    )  # fmt: skip
    try:
        yield up
    finally:
        # Whatever of the group is still there (all of it when the test failed midway).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(up.pid, signal.SIGTERM)
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        if up.stdout is not None:
            up.stdout.close()
