"""Coded errors of the consent and review side."""

from __future__ import annotations

from contract.errors import EarmarkError


class ReviewError(EarmarkError):
    """Base of consent/review errors."""

    code = "review_error"


class NotFound(ReviewError):
    """No such thing, or not yours: the same answer, so ids cannot be probed."""

    code = "not_found"
