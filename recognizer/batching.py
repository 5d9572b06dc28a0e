"""Gathering the jobs of all of a web process's connections into batches: one publish per batch.

Dynamic batching, as model servers do it (Triton's dynamic batcher, Ray Serve's @serve.batch), with
the workers' pace as the window instead of a timer: at most `in_flight` prediction batches of this
process are out at once (published and not yet answered). A job that finds room leaves at once, on
the next turn of the event loop, with whatever else arrived in that turn: a quiet service adds no
wait. When the workers are busy, jobs gather here, not as one message each in Redis, and leave
together as soon as a batch comes back: batches grow with the load, and the queue's fixed costs
(a publish, a pick-up, an answer per batch) are paid once per batch instead of once per drawing.
A batch whose answer never comes (its worker died, its message expired) stops counting after
`lost_after_s`; the sessions ask again for what it carried.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor

from contract.jobs import Batch, Job
from contract.tasks import MAX_BATCH, PREDICT_TASK
from recognizer import metrics

log = logging.getLogger(__name__)

# puts a batch on its task's queue: a coroutine function runs on the event loop; a blocking one in the publish thread
Publish = Callable[[Batch], None] | Callable[[Batch], Awaitable[None]]
OnFailed = Callable[[BaseException], Awaitable[None]]


def _is_async(fn: object) -> bool:
    # An object whose __call__ is a coroutine function (callable() would not say whether it is async).
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004


class JobBatcher:
    def __init__(
        self,
        publish: Publish,
        *,
        max_batch: int = MAX_BATCH,
        in_flight: int = 2,
        lost_after_s: float = 3.0,
        windowed: tuple[str, ...] = (PREDICT_TASK,),
        in_thread: bool = True,
        executor: Executor | None = None,
    ) -> None:
        self._publish = publish
        self._max_batch, self._window, self._lost_after_s = max_batch, in_flight, lost_after_s
        self._windowed = windowed  # tasks whose batches count against the window (uploads, heat maps do not)
        # One thread: publishes leave in order, and Celery's producer is used by one thread only.
        # in_thread=False publishes on the event loop itself (no thread hand-off; the loop waits).
        self._executor = (
            executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-publish")
            if in_thread and not _is_async(publish)
            else None
        )
        self._pending: dict[str, list[tuple[Job, OnFailed]]] = {}
        self._out: dict[str, float] = {}  # windowed batches published and not answered: id -> when
        self._flushing: asyncio.Task[None] | None = None
        self._recheck: asyncio.TimerHandle | None = None
        self.published_batches = 0
        self.published_jobs = 0

    @property
    def in_flight(self) -> int:
        return len(self._out)

    @property
    def waiting(self) -> int:
        return sum(len(items) for items in self._pending.values())

    def add(self, job: Job, on_failed: OnFailed) -> None:
        """Queue `job` for the next batch; `on_failed` is awaited if its batch cannot be published."""
        self._pending.setdefault(job.task, []).append((job, on_failed))
        self._kick()

    def done(self, batch_id: str) -> None:
        """The answers of batch `batch_id` arrived: its place in the window is free."""
        if self._out.pop(batch_id, None) is not None:
            self._kick()

    def _kick(self) -> None:
        if self._flushing is None and self._next_task() is not None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    def _room(self) -> bool:
        if len(self._out) < self._window:
            return True
        now = time.monotonic()
        for batch_id, sent in list(self._out.items()):
            if now - sent > self._lost_after_s:  # never answered: stop waiting for it
                log.warning("batch %s unanswered after %.1f s: no longer waited for", batch_id, self._lost_after_s)
                del self._out[batch_id]
        if len(self._out) < self._window:
            return True
        if self._recheck is None:  # nothing else may come to wake us: look again when the oldest is lost
            delay = max(0.0, min(self._out.values()) + self._lost_after_s - now) + 0.01
            self._recheck = asyncio.get_running_loop().call_later(delay, self._rechecked)
        return False

    def _rechecked(self) -> None:
        self._recheck = None
        self._kick()

    def _next_task(self) -> str | None:
        for task, items in self._pending.items():
            if items and (task not in self._windowed or self._room()):
                return task
        return None

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while (task := self._next_task()) is not None:
                items = self._pending[task]
                chunk, self._pending[task] = items[: self._max_batch], items[self._max_batch :]
                batch = Batch(uuid.uuid4().hex, [job for job, _ in chunk])
                if task in self._windowed:
                    self._out[batch.id] = time.monotonic()
                try:
                    if self._executor is None:
                        published = self._publish(batch)
                        if inspect.isawaitable(published):
                            await published
                    else:
                        await loop.run_in_executor(self._executor, self._publish, batch)
                except Exception as exc:  # broker down: every job of the batch is told
                    self._out.pop(batch.id, None)
                    log.warning("could not publish a batch of %d for %s: %s", len(chunk), task, exc)
                    await asyncio.gather(*(failed(exc) for _, failed in chunk), return_exceptions=True)
                else:
                    self.published_batches += 1
                    self.published_jobs += len(chunk)
                    metrics.observe_batch(task, len(chunk))
        finally:
            self._flushing = None
