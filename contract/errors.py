"""Coded error base shared by device and cloud."""

from __future__ import annotations

import sys


class EarmarkError(Exception):
    """An error with a stable machine-readable code and a one-line human message."""

    code: str = "earmark_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


class ContractError(EarmarkError):
    """A message or topic that is out of contract. Its message never quotes content."""

    code = "contract"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)


def report(prog: str, err: EarmarkError) -> int:
    """Print the one line a user sees for a failure and return the exit status (2) for it."""
    print(f"{prog}: error: {err}", file=sys.stderr)  # noqa: T201 - this is the CLI boundary
    return 2
