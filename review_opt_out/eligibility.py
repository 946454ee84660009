"""The one rule that decides whether a human may ever hear a clip. The registry decides, not the device.

A device's consent tag is a claim that can only *narrow* review. A clip is reviewable
only if all of these hold:

* the device's tag allowed review (`review_allowed`), and the cloud found no reason of
  its own to rule review out (`review_blocked`, e.g. two starts with different tags);
* its audio was kept (not muted, not a wake without speech, not "don't keep");
* the version the tag names exists in the registry's history, allowed review, and was
  already in force when the *cloud* received the start (its own clock, `received_at`,
  strictly later: a tie fails closed): a version from the future, an unknown one, or
  one that said "no" never counts;
* that version is still the household's current one and still allows review (so
  opting out, and opting back in, never brings an older clip back);
* the household keeps its recordings, and the clip is inside its retention window,
  counted from the cloud's receipt time (a device's clock cannot keep a clip alive).

`VERDICT` names the first rule a clip fails, so ineligible clips are counted by reason.
Every query that lets a reviewer near a clip joins the same three tables and tests
`VERDICT = 'eligible'`: the sampler, assignment, and every audio fetch and submission.
"""

from __future__ import annotations

from typing import Final

from pipeline.clip_queries import Judgement

# Why SQL over the pipeline's `clips c` is written here, the one place outside `pipeline`:
# the rule joins a clip's tag and receipt time with this side's households and consent
# history, and must be one statement - read at one moment inside the transaction that
# admits, assigns or serves the clip (no opt-out can fall in between), and by index over
# millions of clips. So it stays a condition of two owners' tables, which the pipeline's
# own clip queries take as a `Judgement` (pipeline.clip_queries). It names only the clip's
# tag, receipt time and what was kept.

# A clip's household h.
HOUSEHOLD: Final = "JOIN households h ON h.household_id = c.household_id"

# Joins needed by VERDICT: the household h, and the history row of the tag's version v.
JOINS: Final = f"""
    {HOUSEHOLD}
    LEFT JOIN consent_history v ON v.household_id = c.household_id AND v.version = c.consent_version
"""

VERDICT: Final = """
    CASE
        WHEN c.audio_bytes IS NULL THEN 'no_audio'
        WHEN c.review_blocked IS NOT NULL THEN 'blocked_by_cloud'
        WHEN c.review_allowed = 0 AND c.consent_version = 0 THEN 'tag_unknown'
        WHEN c.review_allowed = 0 THEN 'tag_denied'
        WHEN v.version IS NULL AND c.consent_version > h.consent_version THEN 'tag_future'
        WHEN v.version IS NULL THEN 'tag_unknown_version'
        WHEN v.changed_at >= c.received_at THEN 'tag_future'
        WHEN v.review_allowed = 0 THEN 'tag_contradicts_registry'
        WHEN c.consent_version <> h.consent_version THEN 'tag_stale'
        WHEN h.review_allowed = 0 THEN 'household_opted_out'
        WHEN h.keep_recordings = 0 THEN 'not_kept'
        WHEN h.retention_days IS NOT NULL AND c.received_at < cutoff(h.retention_days) THEN 'expired'
        ELSE 'eligible'
    END
"""

ELIGIBLE: Final = f"({VERDICT}) = 'eligible'"

# The verdict on a clip, and whether it is eligible, as the pipeline's clip queries take them.
VERDICT_OF: Final = Judgement(JOINS, VERDICT)
IS_ELIGIBLE: Final = Judgement(JOINS, ELIGIBLE)

REASONS: Final = (
    "no_audio",
    "blocked_by_cloud",
    "tag_unknown",
    "tag_denied",
    "tag_future",
    "tag_unknown_version",
    "tag_contradicts_registry",
    "tag_stale",
    "household_opted_out",
    "not_kept",
    "expired",
)
