"""Group commit: the clip saves that arrive while a commit syncs share the next one.

A save's cost is its commit's sync to disk, not its statements; one at a time, a worker
stores no faster than its disk syncs. Here the saves a worker's streams finish are queued
and the store's thread takes all that are waiting (up to `max_clips`, `max_audio_bytes`)
into one transaction: one commit, one sync, for the lot.

Nothing is acknowledged early: each caller gets its own clip's answer (stored, stored
already, or its error) only once the commit that holds it is durable, and the device's
receipt waits for that. A clip the store refuses fails alone (`SqlClipStore.save_many`);
a commit that fails fails every clip in it, and their devices send them again.

The batches run on the store's one thread (its SQLite connection is that thread's), each
as one task: whatever else is queued there (a start's admission, a conflict to record)
keeps its place between two batches rather than waiting for the whole queue.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from concurrent.futures import Executor, Future
from dataclasses import dataclass

from pipeline.clip_records import Clip, ClipStore

_LOGGER = logging.getLogger(__name__)

MAX_CLIPS = 64
# A batch's audio, held in one transaction: 16 MiB is ~8.7 minutes of speech.
MAX_AUDIO_BYTES = 16 * 1024 * 1024


@dataclass
class _Save:
    clip: Clip
    audio: bytes | None
    answer: Future[bool]


class GroupCommitter:
    """Saves clips through `store.save_many`, batched on `executor` (the store's one thread)."""

    def __init__(
        self,
        store: ClipStore,
        executor: Executor,
        *,
        max_clips: int = MAX_CLIPS,
        max_audio_bytes: int = MAX_AUDIO_BYTES,
    ) -> None:
        if max_clips < 1 or max_audio_bytes < 1:
            raise ValueError("a batch must hold at least one clip")
        self._store = store
        self._executor = executor
        self._max_clips = max_clips
        self._max_audio_bytes = max_audio_bytes
        self._waiting: deque[_Save] = deque()
        self._lock = threading.Lock()
        self._scheduled = False  # a batch task is queued or running on the executor
        self.commits = 0  # batches committed, and the largest (benchmarks, tests)
        self.largest_batch = 0

    async def save(self, clip: Clip, audio: bytes | None) -> bool:
        """Store a clip; True once durable (False: stored already). Raises the store's error."""
        answer: Future[bool] = Future()
        self.submit(clip, audio, answer)
        return await asyncio.wrap_future(answer)

    def submit(self, clip: Clip, audio: bytes | None, answer: Future[bool]) -> None:
        """Queue a clip; `answer` is resolved once its commit is durable (any thread may call)."""
        with self._lock:
            self._waiting.append(_Save(clip, audio, answer))
            if self._scheduled:
                return
            self._scheduled = True
        self._schedule()

    def _take(self) -> list[_Save]:
        batch: list[_Save] = []
        audio_bytes = 0
        with self._lock:
            while self._waiting and len(batch) < self._max_clips:
                size = len(self._waiting[0].audio or b"")
                if batch and audio_bytes + size > self._max_audio_bytes:
                    break
                save = self._waiting.popleft()
                # A caller that gave up (its stream's task was cancelled) stores nothing,
                # as a save not yet started on the executor never did.
                if save.answer.set_running_or_notify_cancel():
                    batch.append(save)
                    audio_bytes += size
        return batch

    def _commit_batch(self) -> None:
        try:
            batch = self._take()
            if batch:
                self._commit(batch)
        finally:
            with self._lock:
                self._scheduled = bool(self._waiting)
            if self._scheduled:
                self._schedule()

    def _schedule(self) -> None:
        try:
            self._executor.submit(self._commit_batch)
        except RuntimeError:  # the executor is shut down: commit here, or the queue would wait for ever
            self._commit_batch()

    def _commit(self, batch: list[_Save]) -> None:
        try:
            results = self._store.save_many([(save.clip, save.audio) for save in batch])
        except Exception as err:  # the commit failed: no clip of the batch is stored
            _LOGGER.error("a commit of %d clips failed: %s", len(batch), err)
            for save in batch:
                save.answer.set_exception(err)
            return
        self.commits += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        for save, result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                save.answer.set_exception(result)
            else:
                save.answer.set_result(result)
