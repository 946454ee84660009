"""The cloud pipeline running in a background thread of the test process."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.ingest import IngestService
from pipeline.settings import PipelineSettings
from pipeline.store import SqlClipStore
from tests.conftest import wait_until


class RunningPipeline:
    """Starts an IngestService on its own event loop; `stop()` waits for it to finish."""

    def __init__(self, settings: PipelineSettings, model: Any | None, enrolled: Sequence[tuple[str, str]] = ()) -> None:
        """`enrolled` (device, household) pairs are enrolled before the pipeline subscribes: a
        device waiting for a listener sends the moment it appears, and must be known then."""
        self.store = SqlClipStore(settings.data_dir, database=settings.database)
        for device_id, household_id in enrolled:
            self.store.enroll(device_id, household_id)
        self.contests = SqlClipStore(settings.data_dir, database=settings.database)
        self.service = IngestService(settings, self.store, model, contest_store=self.contests)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pipeline", daemon=True)
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError(f"pipeline did not connect: {self._error}")

    def _run(self) -> None:
        async def main() -> None:
            ready = asyncio.Event()
            task = asyncio.create_task(self.service.run(ready))
            done, _ = await asyncio.wait({task, asyncio.create_task(ready.wait())}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                task.result()
            self._ready.set()
            await task

        try:
            asyncio.run(main())
        except BaseException as err:  # surfaced by the constructor or stop()
            self._error = err
            self._ready.set()

    def wait_until(self, predicate: Callable[[], bool], timeout_seconds: float = 30.0) -> bool:
        return wait_until(predicate, timeout_seconds)

    def stop(self) -> None:
        self.service.stop()
        self._thread.join(timeout=30)
        self.contests.close()
        self.store.close()
        if self._error is not None:
            raise self._error
