"""What every Earmark command does at its edge: one-line errors, exit 2, no traceback.

Device and cloud commands share it, so `earmark <anything>` fails the same way: a bad
flag, a missing file or a refused value is one line on stderr naming it, and exit
status 2. A traceback appears only with `-v` (for a bug report).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from contract.errors import EarmarkError, report

_LOGGER = logging.getLogger(__name__)
PROG_ENV = "EARMARK_PROG"  # set by `earmark` for the command it runs: errors then say `earmark review`


def prog_name(default: str) -> str:
    """The name a command reports under: `earmark review` when run by `earmark`, else its own."""
    return os.environ.get(PROG_ENV, default)


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (and exit 2), pointing at --help."""

    def error(self, message: str) -> NoReturn:
        """Print `prog: error: message (see prog --help)` and exit 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def run_cli(prog: str, command: Callable[[], int], verbose: int = 0) -> int:
    """Run a command's body inside the one error boundary; return its exit status."""
    try:
        return command()
    except EarmarkError as err:
        return report(prog, err)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0  # the reader went away (`| head`): nothing left to say
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        print(f"{prog}: error: {where}{err.strerror or err}", file=sys.stderr)  # noqa: T201 - the CLI boundary
        return 2
    except Exception as err:
        if verbose:
            raise
        _LOGGER.debug("unexpected error", exc_info=True)
        print(f"{prog}: error: unexpected {type(err).__name__}: {err} (run with -v for details)", file=sys.stderr)  # noqa: T201
        return 2


def entry(default_prog: str, body: Callable[[list[str]], int], argv: Sequence[str] | None) -> int:
    """A console script's `main`: run `body(argv)` inside the boundary, under its reported name."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = sum(a == "--verbose" or (a.startswith("-v") and set(a[1:]) == {"v"}) for a in args)
    return run_cli(prog_name(default_prog), lambda: body(args), verbose)
