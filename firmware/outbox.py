"""The uplink's outbox: messages waiting for the broker, and utterances waiting for the cloud.

A message leaves the outbox only when the broker acknowledged it (QoS 1). An utterance's
messages are then kept, as its *delivery*, until the cloud's receipt (`UtteranceStored`)
says it is stored; if no worker claims its start, if the claiming worker's presence goes,
or if no receipt comes, the whole utterance is queued again from its start. Audio and ends
are addressed to the claiming worker when they leave, so they wait here for the claim.

Every method but `enqueue` runs under `cond`, which the uplink's threads share: the send
loop does several of them as one step. Time is handed in (`now`, monotonic seconds).
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass, field, replace
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contract import topics
from contract.audio import seconds_to_bytes
from contract.messages import UtteranceClaimed, UtteranceStored

_LOGGER = logging.getLogger(__name__)


class UplinkSettings(BaseModel):
    """Outbox bounds and delivery pacing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    outbox_audio_seconds: float = Field(60.0, ge=1, le=600, description="audio held while the broker is away")
    window_messages: int = Field(32, ge=1, le=1000, description="unacknowledged messages in flight")
    claim_timeout_seconds: float = Field(
        5.0, gt=0, le=300, description="no worker claimed a start this long after the broker took it: send it again"
    )
    claimant_grace_seconds: float = Field(
        2.0, gt=0, le=300, description="the claiming worker's presence gone this long: send the utterance to another"
    )
    receipt_timeout_seconds: float = Field(
        60.0, gt=0, le=3600, description="no receipt this long after the end went out: send the utterance again"
    )
    max_resends: int = Field(5, ge=0, le=100, description="whole-utterance resends before giving up on a receipt")


@dataclass
class UplinkStats:
    """Counters for tests and `doctor`."""

    published: int = 0
    abandoned: int = 0
    results: int = 0
    cancelled_ids: set[UUID] = field(default_factory=set)
    inbox_dropped: int = 0
    finals: set[UUID] = field(default_factory=set)
    stored: set[UUID] = field(default_factory=set)  # the cloud's receipts
    resends: collections.Counter[str] = field(default_factory=collections.Counter)  # by reason
    unconfirmed: int = 0  # given up on after max_resends


@dataclass
class Out:
    """One message to publish."""

    utterance_id: UUID | None
    topic: str  # for a start; audio and ends are addressed when they leave (to the claiming worker)
    payload: bytes
    audio_bytes: int = 0
    retain: bool = False
    part: topics.UtterancePart | None = None
    attempt: int = 0  # which sending of its utterance this copy belongs to


@dataclass
class _Delivery:
    """One utterance from its start until the cloud's receipt: what was sent, to whom."""

    attempt: int = 0
    worker_id: str | None = None  # the worker that claimed this attempt
    sent: list[Out] = field(default_factory=list)  # acknowledged by the broker, in order
    sent_audio_bytes: int = 0
    start_sent_at: float | None = None  # monotonic seconds, this attempt
    end_sent_at: float | None = None
    claimant_missing_since: float | None = None
    resends: int = 0


class Outbox:
    """Bounded by audio held (`outbox_audio_seconds`), for unsent and unconfirmed alike."""

    def __init__(self, device_id: str, settings: UplinkSettings, stats: UplinkStats) -> None:
        self.cond = threading.Condition()
        self.pipelines: set[str] = set()  # workers whose presence is retained on the broker
        self._device_id = device_id
        self._settings = settings
        self._stats = stats
        self._queue: collections.deque[Out] = collections.deque()
        self._audio_bytes = 0
        self._limit_bytes = seconds_to_bytes(settings.outbox_audio_seconds)
        self._inflight: collections.deque[Any] = collections.deque()  # paho's infos of queue[0:len]
        self._deliveries: dict[UUID, _Delivery] = {}

    @property
    def empty(self) -> bool:
        """Nothing waits for the broker."""
        return not self._queue

    def open(self, utterance_id: UUID) -> None:
        """An utterance begins: its messages are kept until the cloud's receipt."""
        self._deliveries[utterance_id] = _Delivery()

    def enqueue(self, item: Out) -> bool:
        """Queue `item` (takes `cond`); False if its audio does not fit."""
        with self.cond:
            if item.audio_bytes and self._audio_bytes + item.audio_bytes > self._limit_bytes:
                return False
            if item.part is not None and item.utterance_id is not None:
                delivery = self._deliveries.get(item.utterance_id)
                if delivery is None:
                    return True  # cancelled, stored or given up meanwhile: nothing more of it goes
                item.attempt = delivery.attempt  # belongs to the sending under way (maybe a resend)
            self._queue.append(item)
            self._audio_bytes += item.audio_bytes
            self.cond.notify_all()
            return True

    def remove_unsent(self, utterance_id: UUID, *, audio_only: bool) -> list[Out]:
        """Take an utterance's messages that are not in flight out of the queue; with
        `audio_only`, its chunks only. Returns what was removed."""
        unsent = list(self._queue)[len(self._inflight) :]
        removed = [o for o in unsent if o.utterance_id == utterance_id and (o.audio_bytes or not audio_only)]
        for item in removed:
            self._queue.remove(item)
            self._audio_bytes -= item.audio_bytes
        return removed

    def cancel(self, utterance_id: UUID) -> int:
        """The cloud cancelled the utterance: nothing more of it goes, nothing is resent.
        Returns how many of its messages were still unsent."""
        unsent = self.remove_unsent(utterance_id, audio_only=False)
        self._deliveries.pop(utterance_id, None)
        self.cond.notify_all()
        return len(unsent)

    def news(self, news: UtteranceClaimed | UtteranceStored) -> None:
        """A worker claimed an utterance, or the cloud stored it."""
        delivery = self._deliveries.get(news.utterance_id)
        if isinstance(news, UtteranceStored):
            self._stats.stored.add(news.utterance_id)
            if delivery is not None:
                del self._deliveries[news.utterance_id]
                self.remove_unsent(news.utterance_id, audio_only=False)  # resent copies: not needed
        elif delivery is not None and delivery.worker_id is None:
            # The first claim wins; a later one (our start sent twice) is a worker that
            # hears nothing more and therefore keeps nothing.
            delivery.worker_id = news.worker_id
        self.cond.notify_all()

    def lost_inflight(self) -> None:
        """The connection went: what was in flight is sent again (the cloud drops duplicates)."""
        self._inflight.clear()

    def acknowledged(self, now: float) -> None:
        """Move what the broker acknowledged out of the queue, into its delivery."""
        while self._inflight and self._inflight[0].is_published():
            self._inflight.popleft()
            done = self._queue.popleft()
            self._audio_bytes -= done.audio_bytes
            self._sent(done, now)
            self._stats.published += 1
            self.cond.notify_all()

    def next_to_send(self) -> tuple[Out, str] | None:
        """The next message and its topic, or None when nothing may go now (the window is
        full, the queue is empty, or the next message waits for its utterance's claim)."""
        while len(self._inflight) < self._settings.window_messages and len(self._queue) > len(self._inflight):
            item = self._queue[len(self._inflight)]
            topic = self._address(item)
            if topic is None:
                return None
            if topic:
                return item, topic
            # Never sent (e.g. an old sending's copy found unsent after a reconnect): leaving
            # it would block everything behind it.
            del self._queue[len(self._inflight)]
            self._audio_bytes -= item.audio_bytes
        return None

    def busy(self) -> bool:
        """Something is in flight or waiting to go (the send loop polls faster then)."""
        return bool(self._inflight) or len(self._queue) > len(self._inflight)

    def published(self, item: Out, info: Any) -> None:
        """`item` was handed to paho (its info tells when the broker acknowledges it)."""
        index = len(self._inflight)
        if index < len(self._queue) and self._queue[index] is item:
            self._inflight.append(info)

    def check(self, now: float) -> None:
        """Send again, from its start, every utterance whose worker is gone or silent."""
        for utterance_id, delivery in list(self._deliveries.items()):
            reason = None
            if delivery.worker_id is None:
                if (
                    delivery.start_sent_at is not None
                    and now - delivery.start_sent_at > self._settings.claim_timeout_seconds
                ):
                    reason = "no_claim"
            elif delivery.worker_id not in self.pipelines:
                if delivery.claimant_missing_since is None:
                    delivery.claimant_missing_since = now
                elif now - delivery.claimant_missing_since > self._settings.claimant_grace_seconds:
                    reason = "worker_gone"
            else:
                delivery.claimant_missing_since = None
                if (
                    delivery.end_sent_at is not None
                    and now - delivery.end_sent_at > self._settings.receipt_timeout_seconds
                ):
                    reason = "no_receipt"
            if reason is not None:
                self._resend(utterance_id, delivery, reason)

    def _resend(self, utterance_id: UUID, delivery: _Delivery, reason: str) -> None:
        """Queue the whole utterance again, ahead of anything not yet in flight."""
        in_flight = [
            o for o in list(self._queue)[: len(self._inflight)]
            if o.utterance_id == utterance_id and o.part is not None and o.attempt == delivery.attempt
        ]  # fmt: skip
        unsent = self.remove_unsent(utterance_id, audio_only=False)
        if delivery.resends >= self._settings.max_resends:
            del self._deliveries[utterance_id]
            self._stats.unconfirmed += 1
            _LOGGER.warning(
                "utterance %s: no receipt after %d resends; giving up on it", utterance_id, delivery.resends
            )
            return
        delivery.resends += 1
        delivery.attempt += 1
        again = [replace(o, attempt=delivery.attempt) for o in [*delivery.sent, *in_flight, *unsent]]
        delivery.sent, delivery.sent_audio_bytes = [], 0
        delivery.worker_id = delivery.start_sent_at = delivery.end_sent_at = delivery.claimant_missing_since = None
        position = len(self._inflight)
        for offset, item in enumerate(again):
            self._queue.insert(position + offset, item)
            self._audio_bytes += item.audio_bytes
        self._stats.resends[reason] += 1
        _LOGGER.warning("utterance %s: sending it again (%s, %d messages)", utterance_id, reason, len(again))

    def _sent(self, item: Out, now: float) -> None:
        """The broker acknowledged `item`: keep it until the cloud's receipt."""
        delivery = self._deliveries.get(item.utterance_id) if item.utterance_id is not None else None
        if delivery is None or item.part is None or item.attempt != delivery.attempt:
            return
        delivery.sent.append(item)
        delivery.sent_audio_bytes += item.audio_bytes
        if item.part is topics.UtterancePart.START:
            delivery.start_sent_at = now
        elif item.part is topics.UtterancePart.END:
            delivery.end_sent_at = now
        # Bounded like the queue: past it, the oldest finished utterances can no longer be resent.
        kept = sum(d.sent_audio_bytes for d in self._deliveries.values())
        for utterance_id, old in list(self._deliveries.items()):
            if kept <= self._limit_bytes:
                break
            if old.end_sent_at is not None and old is not delivery:
                kept -= old.sent_audio_bytes
                del self._deliveries[utterance_id]
                self._stats.unconfirmed += 1
                _LOGGER.warning("utterance %s: too much unconfirmed audio; it can no longer be resent", utterance_id)

    def _address(self, item: Out) -> str | None:
        """Where `item` goes now; "" if it must not go at all; None while its utterance waits
        for a claim."""
        if item.part is None or item.utterance_id is None:
            return item.topic
        delivery = self._deliveries.get(item.utterance_id)
        if delivery is None or item.attempt != delivery.attempt:
            return ""  # its utterance is settled, or this copy belongs to a sending given up
        if item.part is topics.UtterancePart.START:
            return item.topic
        if delivery.worker_id is None:
            return None
        return topics.utterance(self._device_id, item.utterance_id, item.part, delivery.worker_id)
