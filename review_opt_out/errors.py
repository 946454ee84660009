"""Coded errors of the consent and review side."""

from __future__ import annotations

from contract.errors import EarmarkError


class ReviewError(EarmarkError):
    """Base of consent/review errors."""

    code = "review_error"


class NotFound(ReviewError):
    """No such thing, or not yours: the same answer, so ids cannot be probed."""

    code = "not_found"


class CountChanged(ReviewError):
    """A delete matched another number of recordings than the member confirmed."""

    code = "count_changed"

    def __init__(self, count: int) -> None:
        super().__init__(f"{count} recordings match now; confirm again")
        self.count = count
