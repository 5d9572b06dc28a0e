"""A time limit for the solo pool's tasks: a worker stuck in one task is replaced, not left hanging.

Celery enforces `task_time_limit` only in its prefork pool; the workers here run tasks in their own
process (`-P solo`), so a task that never returns (a database gone silent under a write, a bug)
would hold its queue for good while the worker's heartbeat thread kept saying it was alive. The
watchdog is a thread that notes when each task starts and ends (Celery's task_prerun/postrun
signals); a task still running after `limit_s` takes the process down, so that whatever supervises
it (`make run`, docker compose, Kubernetes) starts a fresh one. The jobs that task held are asked
again by the web side after its own timeout, or by the sweep for stored drawings.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

EXIT_STUCK = 75  # the process's exit status when the watchdog ends it (EX_TEMPFAIL: try again)


def _exit_stuck(task: str, running_s: float) -> None:
    log.critical("task %s still running after %.0f s: ending this worker for a fresh one", task, running_s)
    logging.shutdown()  # flush the line above: os._exit skips every cleanup
    os._exit(EXIT_STUCK)


class TaskWatchdog:
    def __init__(self, limit_s: float, *, on_stuck: Callable[[str, float], None] = _exit_stuck,
                 clock: Callable[[], float] = time.monotonic, check_every_s: float | None = None) -> None:
        self.limit_s = limit_s
        self._on_stuck, self._clock = on_stuck, clock
        self._every = check_every_s if check_every_s is not None else min(1.0, limit_s / 4)
        self._running: tuple[str, float] | None = None  # (task name, started); one task at a time (solo)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="task-watchdog", daemon=True)

    def task_started(self, task: str) -> None:
        self._running = (task, self._clock())

    def task_finished(self) -> None:
        self._running = None

    def check(self) -> bool:
        """One look: True (and `on_stuck` called) if the task running has run past the limit."""
        running = self._running  # one read: the task may end meanwhile
        if running is None:
            return False
        task, started = running
        took = self._clock() - started
        if took <= self.limit_s:
            return False
        self._on_stuck(task, took)
        if self._running is running:  # told once (on_stuck normally ends the process)
            self._running = None
        return True

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.check()
