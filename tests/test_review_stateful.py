"""A stateful property test of the privacy promise.

Hypothesis interleaves captures (with device tags that may be current, stale, unknown or
even forged), opt-ins, opt-outs, sampling, reviewer fetches, deletions and retention
runs against the real clip store and registry. Whatever the order:

* no reviewer ever receives audio of a clip whose household was opted out when it was
  captured, or is opted out when the reviewer asks;
* right after an opt-out, the household has nothing in the review pool.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from review_opt_out.auth import hash_password
from review_opt_out.cli import apply_retention
from review_opt_out.errors import NotFound
from review_opt_out.registry import Channel
from tests.review_helpers import capture, open_both

HOUSEHOLDS = ("h0", "h1", "h2")
_HASH = hash_password("pw")  # argon2 is slow by design; hash once


@dataclass
class CapturedClip:
    household: str
    opted_in_at_capture: bool
    version_at_capture: int


class ReviewPrivacy(RuleBasedStateMachine):
    """The model: each household's consent, and what each clip was captured under."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="earmark-stateful-"))
        self.store, self.registry = open_both(self.dir)
        self.consent: dict[str, tuple[bool, int]] = {}
        self.clips: dict[uuid.UUID, CapturedClip] = {}
        self.reviewers: list[str] = []
        self.fetched = 0

    @initialize()
    def setup(self) -> None:
        for household in HOUSEHOLDS:
            created = self.registry.create_household(household, household.upper())
            self.consent[household] = (created.review_allowed, created.consent_version)
        self.reviewers = [self.registry.add_reviewer(name, _HASH) for name in ("rita", "sam")]

    def teardown(self) -> None:
        self.registry.close()
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(
        household=st.sampled_from(HOUSEHOLDS),
        tag=st.sampled_from(["current", "stale", "unknown", "forged"]),
        stale_allowed=st.booleans(),
        old=st.booleans(),
    )
    def capture_clip(self, household: str, tag: str, stale_allowed: bool, old: bool) -> None:
        allowed, version = self.consent[household]
        if tag == "current":
            device_tag = (allowed, version)  # the device saw the latest consent message
        elif tag == "stale":
            device_tag = (stale_allowed, max(version - 1, 0))  # it missed the latest change
        elif tag == "unknown":
            device_tag = (False, 0)  # it never saw consent: fail closed
        else:
            device_tag = (True, version)  # a buggy or hostile device claims consent
        clip = capture(self.store, household, device_tag[0], device_tag[1], age_days=120 if old else 0)
        self.clips[clip] = CapturedClip(household, allowed, version)

    @rule(household=st.sampled_from(HOUSEHOLDS), allowed=st.booleans(), channel=st.sampled_from(list(Channel)))
    def change_consent(self, household: str, allowed: bool, channel: Channel) -> None:
        if not allowed and household in self.registry.pool_households():
            event("opt-out while the household had clips in the pool")
        changed = self.registry.set_consent(household, allowed, "member", channel)
        self.consent[household] = (changed.review_allowed, changed.consent_version)
        if not allowed:
            assert household not in self.registry.pool_households()

    @rule(household=st.sampled_from(HOUSEHOLDS), clips=st.integers(1, 3))
    def busy_opted_in_household(self, household: str, clips: int) -> None:
        """The common case in one step (opt in, talk, get sampled), so the pool is often full
        when the other rules strike; random single steps alone rarely line this up."""
        self.change_consent(household, True, Channel.APP)
        for _ in range(clips):
            self.capture_clip(household, "current", stale_allowed=False, old=False)
        self.registry.sample(1.0)

    @rule(fraction=st.sampled_from([1.0, 0.5]))
    def sample(self, fraction: float) -> None:
        self.registry.sample(fraction)

    @rule(reviewer=st.integers(0, 1), submit=st.booleans())
    def reviewer_fetches(self, reviewer: int, submit: bool) -> None:
        reviewer_id = self.reviewers[reviewer]
        pseudonym = self.registry.next_assignment(reviewer_id)
        if pseudonym is None:
            return
        clip_id = self.registry.db.execute(
            "SELECT clip_id FROM assignments WHERE pseudonym = ?", (pseudonym,)
        ).fetchone()[0]
        try:
            path = self.registry.reviewer_audio_path(reviewer_id, pseudonym)
        except NotFound:
            return
        assert path.read_bytes()[:4] == b"RIFF"
        event("a reviewer received audio")
        self.fetched += 1
        captured = self.clips[uuid.UUID(clip_id)]
        allowed_now, version_now = self.consent[captured.household]
        assert captured.opted_in_at_capture, "audio of a clip captured while opted out reached a reviewer"
        assert allowed_now, "audio of a clip whose household is opted out reached a reviewer"
        assert captured.version_at_capture == version_now, "audio captured under an older consent reached a reviewer"
        if submit:
            self.registry.submit(reviewer_id, pseudonym, "corrected text")

    @rule(household=st.sampled_from(HOUSEHOLDS), everything=st.booleans(), data=st.data())
    def delete(self, household: str, everything: bool, data: st.DataObject) -> None:
        own = [c for c, v in self.clips.items() if v.household == household]
        if not own:
            return
        clip_id = None if everything else str(data.draw(st.sampled_from(own)))
        for path in self.registry.delete(household, "member", clip_id=clip_id):
            path.unlink()
        for clip in own if everything else [uuid.UUID(str(clip_id))]:
            self.clips.pop(clip, None)

    @rule(household=st.sampled_from(HOUSEHOLDS), choice=st.sampled_from(["3_months", "18_months", "never"]))
    def retention(self, household: str, choice: str) -> None:
        self.registry.set_retention(household, choice, "member")
        apply_retention(self.registry)
        remaining = {r["id"] for h in HOUSEHOLDS for r in self.registry.recordings(h)}
        self.clips = {c: v for c, v in self.clips.items() if str(c) in remaining}

    @invariant()
    def opted_out_households_have_nothing_in_the_pool(self) -> None:
        pool = self.registry.pool_households()
        for household, (allowed, _version) in self.consent.items():
            if not allowed:
                assert household not in pool

    @invariant()
    def every_pooled_clip_exists(self) -> None:
        pooled = {row[0] for row in self.registry.db.execute("SELECT clip_id FROM review_pool")}
        assert pooled <= {str(c) for c in self.clips}


ReviewPrivacy.TestCase.settings = settings(
    max_examples=100, stateful_step_count=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestReviewPrivacy = ReviewPrivacy.TestCase
