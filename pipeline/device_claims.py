"""Where the cloud stops believing a device: every number a device sends is checked here.

A device (or anyone able to publish as one) claims an identity, a consent tag, sequence
numbers, a chunk count and a length. This module bounds each claim by the cloud's own
limits (`IngestSettings`) and by what the cloud already knows, so a handler never acts
on a raw device value. The *consent* decision itself is not made here: the pipeline only
records the tag as a claim, the time it arrived and any reason it found to rule review
out; `review_opt_out.eligibility` decides.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from dataclasses import dataclass

from contract.errors import ContractError
from contract.messages import CHUNK_SECONDS, UtteranceEnd, UtteranceStart
from contract.topics import UtteranceTopic
from pipeline.settings import IngestSettings

# A device that sends chunks four times smaller than the contract's is still served.
_CHUNKS_PER_CONTRACT_CHUNK = 4


@dataclass(frozen=True)
class ConsentTag:
    """The part of a start that must never change for one utterance."""

    household_id: str
    review_allowed: bool
    consent_version: int

    @classmethod
    def of(cls, start: UtteranceStart) -> ConsentTag:
        """The tag a start claims."""
        return cls(start.household_id, start.review_allowed, start.consent_version)


def check_start_identity(topic: UtteranceTopic, start: UtteranceStart) -> None:
    """The ids inside a start must be the ones its (ACL-checked) topic names."""
    if start.device_id != topic.device_id or start.utterance_id != topic.utterance_id:
        raise ContractError("identity_mismatch", "start message ids differ from its topic")


def check_enrolment(claimed_household: str, enrolled_household: str | None) -> None:
    """The household a start names must be the one the device is enrolled in *now*."""
    if enrolled_household is None:
        raise ContractError("unknown_device", "device is not enrolled")
    if claimed_household != enrolled_household:
        raise ContractError("identity_mismatch", "device is not enrolled in that household")


def same_tag_or_conflict(first: ConsentTag, again: ConsentTag) -> bool:
    """True for a redelivered start; a different tag or household is a conflict (ContractError)."""
    if first == again:
        return True
    raise ContractError("conflicting_start", "a second start for this utterance carries another tag or household")


class StreamLimits:
    """The cloud's bounds on one stream, derived once from the settings."""

    def __init__(self, settings: IngestSettings) -> None:
        self.max_audio_bytes = int(settings.max_utterance_seconds * 16_000) * 2
        # Chunk numbers and the end's chunk count may not claim more than this many chunks.
        self.max_chunks = math.ceil(settings.max_utterance_seconds / CHUNK_SECONDS) * _CHUNKS_PER_CONTRACT_CHUNK
        self.window_chunks = settings.sequence_window_chunks

    def check_sequence(self, sequence: int) -> None:
        """A chunk number inside the cloud's bound for one utterance."""
        if sequence >= self.max_chunks:
            raise ContractError("sequence_out_of_bounds", f"chunk number beyond {self.max_chunks}")

    def check_end(self, end: UtteranceEnd) -> None:
        """An end whose chunk count is inside the cloud's bound."""
        if end.chunk_count > self.max_chunks:
            raise ContractError("chunk_count_out_of_bounds", f"chunk_count beyond {self.max_chunks}")


class StreamQuotas:
    """Open streams per device, per household and in all: one device cannot starve the others."""

    def __init__(self, settings: IngestSettings) -> None:
        self._settings = settings
        self._devices: collections.Counter[str] = collections.Counter()
        self._households: collections.Counter[str] = collections.Counter()
        self._total = 0

    def admit_device(self, device_id: str) -> None:
        """Reserve a stream for a device (before its household is known) or ContractError."""
        if self._total >= self._settings.max_streams:
            raise ContractError("too_many_streams", "stream limit reached")
        if self._devices[device_id] >= self._settings.max_streams_per_device:
            raise ContractError("device_quota", "this device has too many streams open")
        self._devices[device_id] += 1
        self._total += 1

    def admit_household(self, household_id: str) -> None:
        """Charge an admitted device's stream to its (resolved) household or ContractError."""
        if self._households[household_id] >= self._settings.max_streams_per_household:
            raise ContractError("household_quota", "this household has too many streams open")
        self._households[household_id] += 1

    def release(self, device_id: str, household_id: str | None) -> None:
        """A stream ended (or was refused after `admit_device`)."""
        self._total -= 1
        self._devices[device_id] -= 1
        if self._devices[device_id] <= 0:
            del self._devices[device_id]
        if household_id is not None:
            self._households[household_id] -= 1
            if self._households[household_id] <= 0:
                del self._households[household_id]


_MAX_BUCKETS = 100_000  # devices remembered by the rate limit (~10 MB)


class DeviceRateLimit:
    """A token bucket per device, checked on paho's thread before a message costs the loop anything.

    A real speaker sends ~7 messages a second, and after a reconnect at most its outbox
    (60 s of audio) at once; a device far beyond that is flooding, and what it sends
    beyond the bucket is dropped and counted, so the loop's time goes to everyone else.
    """

    def __init__(self, settings: IngestSettings, clock: Callable[[], float]) -> None:
        self._rate = settings.max_device_messages_per_second
        self._burst = float(settings.device_message_burst)
        self._clock = clock
        # device -> (tokens, at), least recently heard first
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()

    def allow(self, device_id: str) -> bool:
        """Whether this device may send one more message now (O(1))."""
        now = self._clock()
        tokens, at = self._buckets.pop(device_id, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        allowed = tokens >= 1.0
        self._buckets[device_id] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > _MAX_BUCKETS:
            # Ids are free to invent on an open broker: forget the one heard least recently.
            self._buckets.popitem(last=False)
        return allowed
