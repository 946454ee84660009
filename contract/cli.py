"""What every Earmark command does at its edge: one-line errors, exit 2, no traceback.

Device and cloud commands share it, so `earmark <anything>` fails the same way: a bad
flag, a missing file or a refused value is one line on stderr naming it, and exit
status 2. A traceback appears only with `-v` (for a bug report). The doctors of both
sides (`earmark doctor`, `earmark pipeline doctor`) report their checks the same way too.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import parse_qs, urlsplit

from contract.errors import EarmarkError, report

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    """The outcome of one doctor check, and how to fix it when it failed."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


def print_checks(checks: Sequence[Check]) -> int:
    """One line per check (`ok  ` or `FAIL`), a failure's fix under it; exit status 0 or 1."""
    for check in checks:
        print(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")  # noqa: T201
        if not check.ok and check.fix:
            print(f"     fix: {check.fix}")  # noqa: T201
    return 0 if all(check.ok for check in checks) else 1


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


def entry(prog: str, body: Callable[[list[str]], int], argv: Sequence[str] | None) -> int:
    """A command's `main`: run `body(argv)` inside the boundary, reporting as `prog`."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = sum(a == "--verbose" or (a.startswith("-v") and set(a[1:]) == {"v"}) for a in args)
    return run_cli(prog, lambda: body(args), verbose)


DATABASE_ENV = "EARMARK_DATABASE"


def add_database_arguments(parser: argparse.ArgumentParser, about: str) -> None:
    """`--database URL` and `--database-file PATH`, for every command that opens the cloud's database."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--database",
        metavar="URL",
        help=f"{about} (default: ${DATABASE_ENV}, else SQLite in the data directory); a password here shows in `ps`:"
        f" prefer --database-file or ${DATABASE_ENV}",
    )
    group.add_argument("--database-file", type=Path, metavar="PATH", help="a file whose first line is the database URL")


def database_url(args: argparse.Namespace, prog: str) -> str | None:
    """The database URL from --database, --database-file or $EARMARK_DATABASE; None for the default."""
    if args.database is not None:
        if _has_password(args.database):
            # Still honoured (scripts rely on it), but every local user can read a command line.
            print(  # noqa: T201 - the CLI boundary
                f"{prog}: warning: --database puts the database password on the command line, where any local user"
                f" can read it; use ${DATABASE_ENV} or --database-file PATH",
                file=sys.stderr,
            )
        return str(args.database)
    if args.database_file is not None:
        from contract.config import ConfigError  # pydantic: only for the commands that have a database

        path: Path = args.database_file
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            raise ConfigError(f"--database-file {path}: {reason}") from err
        if not lines or not lines[0].strip():
            raise ConfigError(f"--database-file {path}: its first line should be the database URL, and it is empty")
        return lines[0].strip()
    return os.environ.get(DATABASE_ENV) or None


def _has_password(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:  # unparseable: warn if it might hold a password (the database layer names the problem)
        return "@" in url
    return parts.password is not None or "password" in parse_qs(parts.query)
