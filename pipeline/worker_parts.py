"""What every part of one ingest worker shares: its settings, clocks, counters and threads.

`IngestService` builds one `WorkerParts` and hands it to the modules that serve a stream
(`pipeline.serving`, `pipeline.feeding`, `pipeline.contest_watch`, `pipeline.storing`),
so none of them reaches into another's state.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from contract.messages import RecognitionResult, UtteranceCancelled, UtteranceClaimed, UtteranceStored
from pipeline.arbitration import ContestRules
from pipeline.device_claims import StreamLimits, StreamQuotas
from pipeline.group_commit import GroupCommitter
from pipeline.settings import PipelineSettings
from pipeline.store import ClipStore
from pipeline.wake_check import WakeVerifier

_LOGGER = logging.getLogger("pipeline.ingest")  # rejections are the ingest's to report

ToDevice = RecognitionResult | UtteranceCancelled | UtteranceClaimed | UtteranceStored


@dataclass
class IngestStats:
    """Counters, for tests, health checks and the benchmark."""

    messages: int = 0
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    duplicates: int = 0
    retained_ignored: int = 0
    rate_limited: int = 0
    orphan_chunks_dropped: int = 0
    queue_full: int = 0
    stored: collections.Counter[str] = field(default_factory=collections.Counter)
    partials_published: int = 0
    finals_published: int = 0
    arbitration_cancelled: int = 0
    claims: int = 0
    receipts: int = 0
    let_go: int = 0  # streams let go (broker lost, or stopping): their devices send them again
    unfollowed: int = 0  # claims the device never followed (it took another worker's): nothing to keep
    wake_checks: int = 0  # requests the second wake model checked
    wake_rejected: int = 0  # of those, refused: it did not hear the word
    wake_check_failures: int = 0  # checks that could not run (kept from review, still served)
    wake_check_cpu_seconds: float = 0.0


class OnlineClock:
    """Monotonic seconds that stand still while the pipeline is cut off from the broker.

    A device cannot be heard while the broker is away, so no stream may time out then.
    `epoch` counts connections: a stream's silence only counts once its device has been
    heard in the current one.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._offline_total = 0.0
        self._offline_since: float | None = clock()  # offline until the first connect
        self.epoch = 0

    def now(self) -> float:
        """Connected seconds so far."""
        t = self._clock()
        frozen = t - self._offline_since if self._offline_since is not None else 0.0
        return t - self._offline_total - frozen

    @property
    def online(self) -> bool:
        """Whether the pipeline is connected."""
        return self._offline_since is None

    def set_online(self, online: bool) -> None:
        """The broker connection came (a new epoch) or went."""
        if online:
            self.epoch += 1
        if online and self._offline_since is not None:
            self._offline_total += self._clock() - self._offline_since
            self._offline_since = None
        elif not online and self._offline_since is None:
            self._offline_since = self._clock()


@dataclass
class WorkerParts:
    """One worker's shared parts; built once by `IngestService`."""

    settings: PipelineSettings
    store: ClipStore
    # Contest decisions come right before a request's answer: on a connection and thread of
    # their own (when given one) they never queue behind another request's save.
    contests: ClipStore
    model: Any | None
    clock: OnlineClock
    publish: Callable[[str, ToDevice], None]
    stats: IngestStats = field(default_factory=IngestStats)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    limits: StreamLimits = field(init=False)
    quotas: StreamQuotas = field(init=False)
    contest_rules: ContestRules = field(init=False)
    # Vosk work runs on `cpu`; the store gets one thread of its own (SQLite connection).
    cpu: ThreadPoolExecutor = field(init=False)
    io: ThreadPoolExecutor = field(init=False)
    # Clip saves, batched on `io`: the saves that wait while one commits share the next commit.
    saves: GroupCommitter = field(init=False)
    contest_io: ThreadPoolExecutor = field(init=False)
    wake_verifier: WakeVerifier | None = field(init=False)

    def __post_init__(self) -> None:
        ingest = self.settings.ingest
        self.wake_verifier = WakeVerifier.from_settings(self.settings.wake_check)
        self.limits = StreamLimits(ingest)
        self.quotas = StreamQuotas(ingest)
        self.contest_rules = ingest.contest_rules()
        self.cpu = ThreadPoolExecutor(self.settings.recognition_threads, thread_name_prefix="recognize")
        self.io = ThreadPoolExecutor(1, thread_name_prefix="clip-store")
        self.saves = GroupCommitter(self.store, self.io)
        separate = self.contests is not self.store
        self.contest_io = ThreadPoolExecutor(1, thread_name_prefix="contests") if separate else self.io

    def reject(self, code: str, topic: str, detail: str = "") -> None:
        """Count a message out of contract; log it (ids, never content) without flooding."""
        self.stats.rejected[code] += 1
        count = self.stats.rejected[code]
        if worth_a_log_line(count):
            _LOGGER.warning("rejected message on %s: %s %s (%d so far)", topic[:200], code, detail, count)

    def shut_down_threads(self) -> None:
        """Wait for the recognizer and store threads' work, then end them."""
        self.cpu.shutdown(wait=True)
        self.io.shutdown(wait=True)
        self.contest_io.shutdown(wait=True)


def worth_a_log_line(count: int) -> bool:
    """A flood must not become a flood of log lines: the first ten of a kind, then every power of two."""
    return count <= 10 or count & (count - 1) == 0
