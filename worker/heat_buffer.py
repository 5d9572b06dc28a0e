"""Heat-map jobs of several inference batches, queued as one heat task.

Under load an inference batch holds one or two pen-up answers, so a heat task per batch paid a
Celery task's fixed cost (pick-up, tracing, the answer's publish) per one or two heat maps. The
inference worker gathers them instead: a heat task leaves once `size` jobs wait, or `wait_s` after
the first one (on the worker's event loop, between tasks), whichever comes first.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from worker.jobs import Job

CallLater = Callable[[float, Callable[[], None]], Any]


class HeatBuffer:
    def __init__(self, send: Callable[[list[Job]], None], *, size: int, wait_s: float,
                 call_later: Callable[[], CallLater | None]) -> None:
        self._send, self._size, self._wait_s, self._call_later = send, size, wait_s, call_later
        self._jobs: list[Job] = []
        self._armed = False

    def add(self, jobs: Sequence[Job]) -> None:
        self._jobs.extend(jobs)
        later = self._call_later()
        if len(self._jobs) >= self._size or later is None:  # full, or no loop to wait on: at once
            self.flush()
        elif self._jobs and not self._armed:
            self._armed = True
            later(self._wait_s, self._due)

    def _due(self) -> None:
        self._armed = False
        self.flush()

    def flush(self) -> None:
        if self._jobs:
            jobs, self._jobs = self._jobs, []
            self._send(jobs)
