"""Gathering the jobs of all of a web process's connections into batches: one publish per batch.

No timer and no added wait: a job added while nothing is being published goes out on the next
turn of the event loop (with whatever else arrived in that turn); jobs added while a publish is
under way wait for it and leave together in the next one. So batches stay at one job when the
service is quiet and grow with the load, paying the queue's fixed costs once per batch.
"""
from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor

from worker.jobs import MAX_BATCH, Job

log = logging.getLogger(__name__)

Publish = Callable[[str, list[Job]], None]  # (queue, jobs): blocking, run off the event loop
OnFailed = Callable[[BaseException], Awaitable[None]]


class JobBatcher:
    def __init__(self, publish: Publish, *, max_batch: int = MAX_BATCH, in_thread: bool = True,
                 executor: Executor | None = None) -> None:
        self._publish = publish
        self._max_batch = max_batch
        # One thread: publishes leave in order, and Celery's producer is used by one thread only.
        # in_thread=False publishes on the event loop itself (no thread hand-off; the loop waits).
        self._executor = (executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-publish")
                          if in_thread else None)
        self._pending: list[tuple[Job, OnFailed]] = []
        self._flushing: asyncio.Task[None] | None = None
        self.published_batches = 0
        self.published_jobs = 0

    def add(self, job: Job, on_failed: OnFailed) -> None:
        """Queue `job` for the next batch; `on_failed` is awaited if its batch cannot be published."""
        self._pending.append((job, on_failed))
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                taken, self._pending = self._pending, []
                by_queue: dict[str, list[tuple[Job, OnFailed]]] = defaultdict(list)
                for item in taken:
                    by_queue[item[0].queue].append(item)
                for queue, items in by_queue.items():
                    for i in range(0, len(items), self._max_batch):
                        chunk = items[i:i + self._max_batch]
                        try:
                            if self._executor is None:
                                self._publish(queue, [j for j, _ in chunk])
                            else:
                                await loop.run_in_executor(self._executor, self._publish, queue, [j for j, _ in chunk])
                        except Exception as exc:  # broker down: every job of the batch is told
                            log.warning("could not publish a batch of %d to %s: %s", len(chunk), queue, exc)
                            await asyncio.gather(*(failed(exc) for _, failed in chunk), return_exceptions=True)
                        else:
                            self.published_batches += 1
                            self.published_jobs += len(chunk)
        finally:
            self._flushing = None
