"""Consent registry, review pool, reviewer assignments and deletion, in the cloud's database.

It shares the database of the pipeline's clip store (SQLite or PostgreSQL,
`pipeline.database`), so that a consent change, the
purge of the household's clips from the review pool, the revocation of open reviewer
assignments and the audit entry commit in ONE transaction: there is no moment at which
a household has opted out but its clips are still reviewable.

Eligibility for review is one rule, in `review_opt_out.eligibility`: the registry
decides, a device's tag can only narrow. Every consent state the service publishes is
signed (`review_opt_out.signing`), so devices believe no one else.

The registry is one object in several parts, each a module with one job:
`registry_schema` (its schema versions, and what older SQLite databases have),
`registry_core` (the connection, transactions, the database's clock), `consent_registry`
(households and consent), `review_pool` (the sampler and reviewers' assignments),
`reviewer_accounts`, and `recordings` (what a household sees and deletes, and retention).
Clips are the pipeline's: the registry reaches them through `pipeline.clip_queries`.
"""

from __future__ import annotations

from review_opt_out.consent_registry import ConsentRegistry
from review_opt_out.recordings import Recordings
from review_opt_out.registry_core import (
    ACTIVATION_TIME,
    JUST_SAID,
    RETENTION_CHOICES,
    Channel,
    ConsentChange,
    Household,
    RecordingFilter,
    zone,
)
from review_opt_out.review_pool import ReviewPool
from review_opt_out.reviewer_accounts import ReviewerAccounts

__all__ = [
    "ACTIVATION_TIME",
    "JUST_SAID",
    "RETENTION_CHOICES",
    "Channel",
    "ConsentChange",
    "Household",
    "RecordingFilter",
    "Registry",
    "zone",
]


class Registry(ConsentRegistry, ReviewPool, ReviewerAccounts, Recordings):
    """All consent and review state; every public method is one transaction."""
