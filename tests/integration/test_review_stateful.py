"""A stateful property test of the privacy promise.

Hypothesis interleaves captures (with device tags that may be current, stale, unknown or
forged: any tag, any version, another household's, conflicting duplicates), opt-ins,
opt-outs, sampling, reviewer fetches, deletions and retention runs against the real clip
store and registry; and a broker that forgets its retained consent messages between a
publisher that republishes and devices (real `ConsentCache`s with the real public key)
that tag what they send with what they last believed. Whatever the order:

* no reviewer ever receives audio of a clip whose household was opted out when the
  cloud received it, or is opted out when the reviewer asks, or whose tag the cloud
  ruled out;
* right after an opt-out, the household has nothing in the review pool;
* a device never believes a newer consent than the registry's, and after the publisher
  reconnects it learns the current one again, whatever the broker forgot.

Requests also go through two workers (two clip-store connections, as two pipeline
processes have): a start admitted by one, sent again to the other after a worker is
killed, a second start with another tag on either worker before or after the save, a
"delete everything I said today" while a request is on its way. Whatever the order, a
request with two tags is never reviewed, and one the household deleted by voice before
it was stored is never stored.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from contract.consent_signature import load_public_key
from firmware.consent_cache import ConsentCache
from pipeline.store import Clip, SqlClipStore, StartClaim
from review_opt_out.auth import hash_password
from review_opt_out.cli import apply_retention
from review_opt_out.errors import NotFound
from review_opt_out.registry import Channel
from review_opt_out.signing import public_key_path
from tests.postgres import fresh_database
from tests.review_helpers import capture, make_clip, open_both

HOUSEHOLDS = ("h0", "h1", "h2")
_HASH = hash_password("pw")  # argon2 is slow by design; hash once


@dataclass
class CapturedClip:
    household: str
    opted_in_at_capture: bool  # the registry's state when the cloud received it
    version_at_capture: int
    blocked: bool = False  # the cloud saw a conflicting duplicate start


@dataclass
class Request:
    """A request some worker admitted and nobody stored yet."""

    captured: CapturedClip
    clip: Clip
    forgotten: bool = False  # the household said "delete everything I said today" since


class ReviewPrivacy(RuleBasedStateMachine):
    """The model: each household's consent, and what each clip was captured under."""

    postgresql = False  # run against a PostgreSQL database of its own per example

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="earmark-stateful-"))
        self.resources = contextlib.ExitStack()
        database = self.resources.enter_context(fresh_database()) if self.postgresql else None
        self.store, self.registry = open_both(self.dir, database)
        self.database = database
        self.workers = [self.store, SqlClipStore(self.dir, database=database)]  # two pipeline processes
        self.requests: dict[uuid.UUID, Request] = {}
        self.stored_requests: dict[uuid.UUID, Clip] = {}  # requests stored through the workers
        self.consent: dict[str, tuple[bool, int]] = {}
        self.clips: dict[uuid.UUID, CapturedClip] = {}
        self.reviewers: list[str] = []
        self.fetched = 0
        self.broker: dict[str, bytes] = {}  # retained consent messages the broker still holds
        key = load_public_key(public_key_path(self.dir))
        self.devices = {h: ConsentCache(self.dir / f"device-{h}.json", h, key) for h in HOUSEHOLDS}

    @initialize()
    def setup(self) -> None:
        for household in HOUSEHOLDS:
            created = self.registry.create_household(household, household.upper())
            self.consent[household] = (created.review_allowed, created.consent_version)
            self.store.enroll(f"dev-{household}", household)
        self.reviewers = [self.registry.add_reviewer(name, _HASH) for name in ("rita", "sam")]

    def teardown(self) -> None:
        self.registry.close()
        for worker in self.workers:
            worker.close()
        self.resources.close()
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

    @rule(
        household=st.sampled_from(HOUSEHOLDS),
        claimed_from=st.sampled_from(HOUSEHOLDS),
        allowed=st.booleans(),
        offset=st.integers(-2, 3),
        conflicting_duplicate=st.booleans(),
    )
    def forging_device(
        self, household: str, claimed_from: str, allowed: bool, offset: int, conflicting_duplicate: bool
    ) -> None:
        """Any tag: another household's version, one from the future or the past, a duplicate that disagrees."""
        version = max(self.consent[claimed_from][1] + offset, 0)
        clip = capture(self.store, household, allowed, version)
        now_allowed, now_version = self.consent[household]
        self.clips[clip] = CapturedClip(household, now_allowed, now_version, blocked=conflicting_duplicate)
        if conflicting_duplicate:
            self.store.block_review(clip, "conflicting_start")  # what the pipeline does on a second, different start

    # -- several workers ----------------------------------------------------------------

    @rule(household=st.sampled_from(HOUSEHOLDS), worker=st.integers(0, 1), claims=st.booleans())
    def request_starts(self, household: str, worker: int, claims: bool) -> None:
        """A device's start reaches one worker, tagged current (or claiming consent it lacks)."""
        allowed, version = self.consent[household]
        now = datetime.now(UTC)
        clip = make_clip(
            device_id=f"dev-{household}",
            household_id=household,
            capture_started_at=now,
            received_at=now,
            review_allowed=True if claims else allowed,
            consent_version=version,
        )
        self.workers[worker].admit_start(_claim(clip))
        self.requests[clip.utterance_id] = Request(CapturedClip(household, allowed, version), clip)

    @rule(data=st.data(), worker=st.integers(0, 1), conflicting=st.booleans(), stored=st.booleans())
    def start_again(self, data: st.DataObject, worker: int, conflicting: bool, stored: bool) -> None:
        """The same start sent again (a resend after a worker died), or one with another tag."""
        if stored:
            pool = [c for c in self.clips if c in self.stored_requests]
            if not pool:
                return
            utterance_id = data.draw(st.sampled_from(pool))
            clip, captured = self.stored_requests[utterance_id], self.clips[utterance_id]
        else:
            if not self.requests:
                return
            utterance_id = data.draw(st.sampled_from(sorted(self.requests)))
            clip, captured = self.requests[utterance_id].clip, self.requests[utterance_id].captured
        self._start_again(clip, captured, worker, conflicting=conflicting, stored=stored)

    def start_again_of(self, utterance_id: uuid.UUID, worker: int, *, conflicting: bool) -> None:
        if utterance_id in self.requests:
            request = self.requests[utterance_id]
            self._start_again(request.clip, request.captured, worker, conflicting=conflicting, stored=False)
        elif utterance_id in self.clips:
            clip, captured = self.stored_requests[utterance_id], self.clips[utterance_id]
            self._start_again(clip, captured, worker, conflicting=conflicting, stored=True)

    def _start_again(self, clip: Clip, captured: CapturedClip, worker: int, *, conflicting: bool, stored: bool) -> None:
        if conflicting:
            clip = replace(clip, review_allowed=not clip.review_allowed)
            captured.blocked = True
            event("a conflicting start on " + ("a stored clip" if stored else "a request on its way"))
        self.workers[worker].admit_start(_claim(clip))

    @rule(worker=st.integers(0, 1))
    def worker_killed(self, worker: int) -> None:
        """A worker dies and another takes its place: nothing of its memory survives."""
        self.workers[worker].close()
        self.workers[worker] = SqlClipStore(self.dir, database=self.database)
        if worker == 0:
            self.store = self.workers[0]

    @rule(data=st.data(), worker=st.integers(0, 1))
    def request_stored(self, data: st.DataObject, worker: int) -> None:
        """Whichever worker the device's resend reached stores the request."""
        if not self.requests:
            return
        self.store_request(data.draw(st.sampled_from(sorted(self.requests))), worker)

    def store_request(self, utterance_id: uuid.UUID, worker: int) -> None:
        request = self.requests.pop(utterance_id)
        self.workers[worker].save(request.clip, bytes(3200))
        kept = self.store.get(utterance_id)
        if request.forgotten:
            assert kept is None, "a request deleted by voice before it was stored was stored"
            return
        assert kept is not None
        self.clips[utterance_id] = request.captured
        self.stored_requests[utterance_id] = request.clip

    @rule(household=st.sampled_from(HOUSEHOLDS))
    def delete_today_by_voice(self, household: str) -> None:
        self.registry.delete_spoken(f"dev-{household}", str(uuid.uuid4()), today=True)
        for request in self.requests.values():
            if request.captured.household == household:
                request.forgotten = True
        remaining = {r["id"] for r in self.registry.recordings(household)}
        self.clips = {c: v for c, v in self.clips.items() if v.household != household or str(c) in remaining}

    @rule(household=st.sampled_from(HOUSEHOLDS), ahead=st.integers(1, 2))
    def forgery_ahead_of_an_opt_in(self, household: str, ahead: int) -> None:
        """The attack seen on the old cloud, in one step: claim a version that does not exist
        yet, then the household opts in (making it real) before the sampler looks."""
        allowed, version = self.consent[household]
        clip = capture(self.store, household, True, version + ahead)
        self.clips[clip] = CapturedClip(household, allowed, version)
        for _ in range(ahead):
            self.change_consent(household, True, Channel.APP)
        self.registry.sample(1.0)

    @rule(household=st.sampled_from(HOUSEHOLDS))
    def device_speaks(self, household: str) -> None:
        """A device tags its clip with the consent it last believed (perhaps stale, perhaps unknown)."""
        allowed, version = self.devices[household].current()
        clip = capture(self.store, household, allowed, version)
        now_allowed, now_version = self.consent[household]
        self.clips[clip] = CapturedClip(household, now_allowed, now_version)

    @rule()
    def publisher_publishes_pending(self) -> None:
        for household, version, payload in self.registry.unpublished_consent():
            self.broker[household] = payload
            self.registry.mark_published(household, version)

    @rule()
    def broker_forgets_retained_messages(self) -> None:
        self.broker.clear()  # restarted without persistence

    @rule()
    def publisher_reconnects(self) -> None:
        after = ""  # the publisher republishes every household's current state at each connect
        while page := self.registry.consent_page(after):
            self.broker.update({h: payload for h, _v, payload in page})
            after = page[-1][0]

    @rule(household=st.sampled_from(HOUSEHOLDS), reconnected=st.booleans())
    def device_receives(self, household: str, reconnected: bool) -> None:
        if reconnected:
            self.publisher_reconnects()
        if household in self.broker:
            self.devices[household].update(self.broker[household])
        if reconnected:
            assert self.devices[household].current() == self.consent[household], "a device missed the current consent"

    @invariant()
    def no_device_believes_a_consent_the_registry_never_gave(self) -> None:
        for household, device in self.devices.items():
            allowed, version = device.current()
            assert version <= self.consent[household][1]
            if version:
                assert self.registry.history(household)[-version].review_allowed == allowed

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
            wav = self.registry.reviewer_audio(reviewer_id, pseudonym)
        except NotFound:
            return
        assert wav[:4] == b"RIFF"
        event("a reviewer received audio")
        self.fetched += 1
        captured = self.clips[uuid.UUID(clip_id)]
        allowed_now, version_now = self.consent[captured.household]
        assert not captured.blocked, "audio of a clip the cloud ruled out reached a reviewer"
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
        self.registry.delete(household, "member", clip_id=clip_id)
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
    def a_clip_with_two_tags_is_never_eligible(self) -> None:
        for clip, captured in self.clips.items():
            if captured.blocked:
                assert self.registry.verdict(str(clip)) != "eligible", "a clip with two tags could be reviewed"

    @rule(household=st.sampled_from(HOUSEHOLDS), first=st.integers(0, 1), second=st.integers(0, 1), data=st.data())
    def opted_in_request_split_over_workers(self, household: str, first: int, second: int, data: st.DataObject) -> None:
        """The attack across workers in one step: an opted-in household's request, a second
        start with another tag reaching a worker, the clip stored by either."""
        self.change_consent(household, True, Channel.APP)
        self.request_starts(household, first, claims=False)
        utterance_id = max(self.requests, key=lambda u: self.requests[u].clip.capture_started_at)
        if data.draw(st.booleans()):
            self.start_again_of(utterance_id, second, conflicting=True)
            self.store_request(utterance_id, data.draw(st.integers(0, 1)))
        else:
            self.store_request(utterance_id, data.draw(st.integers(0, 1)))
            self.start_again_of(utterance_id, second, conflicting=True)
        self.registry.sample(1.0)

    @invariant()
    def every_pooled_clip_exists(self) -> None:
        pooled = {row[0] for row in self.registry.db.execute("SELECT clip_id FROM review_pool")}
        assert pooled <= {str(c) for c in self.clips}


def _claim(clip: Clip) -> StartClaim:
    return StartClaim(
        clip.utterance_id,
        clip.device_id,
        clip.household_id,
        clip.review_allowed,
        clip.consent_version,
        clip.capture_started_at,
    )


class ReviewPrivacyOnPostgreSQL(ReviewPrivacy):
    """The same machine, the same promise, on the cloud's other database."""

    postgresql = True


for machine in (ReviewPrivacy, ReviewPrivacyOnPostgreSQL):
    machine.TestCase.settings = settings(
        max_examples=100, stateful_step_count=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
TestReviewPrivacy = ReviewPrivacy.TestCase
TestReviewPrivacyOnPostgreSQL = ReviewPrivacyOnPostgreSQL.TestCase
