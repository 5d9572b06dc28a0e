"""Time limits for work that must not hang: a process stuck in one piece of work is replaced.

Workers: Celery enforces `task_time_limit` only in its prefork pool; the workers here run tasks in
their own process (`-P solo`), so a task that never returns (a database gone silent under a write,
a bug) would hold its queue for good while the worker's heartbeat thread kept saying it was alive.
worker.tasks marks each task's start and end (Celery's task_prerun/postrun signals).

Web processes: every socket of a process shares its event loop, so one callback that never returns
(a blocking call on the loop, a bug) leaves all of them waiting, while the process looks alive to
its supervisor. `watch_event_loop` has the loop mark itself every second; a loop that stops
turning ages its mark.

A watchdog is a thread; work still running after `limit_s` takes the process down (exit status
EXIT_STUCK), so that whatever supervises it (`make run`, docker compose, Kubernetes) starts a fresh
one. What the process held is asked for again: jobs by the web side after its timeout, stored
drawings by the sweep, sockets by the page's reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable

from digitsite.periodic import Periodic

log = logging.getLogger(__name__)

EXIT_STUCK = 75  # the process's exit status when a watchdog ends it (EX_TEMPFAIL: try again)


def _exit_stuck(what: str, running_s: float) -> None:
    log.critical("%s still running after %.0f s: ending this process for a fresh one", what, running_s)
    logging.shutdown()  # flush the line above: os._exit skips every cleanup
    os._exit(EXIT_STUCK)


class Watchdog:
    """Ends the process (`on_stuck`) when the work begun last has run past `limit_s` unfinished."""

    def __init__(
        self,
        limit_s: float,
        *,
        on_stuck: Callable[[str, float], None] = _exit_stuck,
        clock: Callable[[], float] = time.monotonic,
        check_every_s: float | None = None,
    ) -> None:
        self.limit_s = limit_s
        self._on_stuck, self._clock = on_stuck, clock
        self._every = check_every_s if check_every_s is not None else min(1.0, limit_s / 4)
        self._running: tuple[str, float] | None = None  # (what, since when); one piece of work at a time
        self._checked_at: float | None = None
        self._thread = Periodic("watchdog", self._every, self.check)

    def begin(self, what: str) -> None:
        self._running = (what, self._clock())

    def end(self) -> None:
        self._running = None

    def check(self) -> bool:
        """One look: True (and `on_stuck` called) if the work running has run past the limit."""
        now = self._clock()
        paused = self._checked_at is not None and now - self._checked_at > max(2 * self._every, self.limit_s / 2)
        self._checked_at = now
        running = self._running  # one read: the work may end meanwhile
        if running is None:
            return False
        what, since = running
        if paused:
            # This thread did not run for a long while: the whole process (or machine) was stopped,
            # not just the work. The time it stood still is not the work's: its allowance restarts.
            if self._running is running:
                self._running = (what, now)
            return False
        took = now - since
        if took <= self.limit_s:
            return False
        self._on_stuck(what, took)
        if self._running is running:  # told once (on_stuck normally ends the process)
            self._running = None
        return True

    def start(self) -> None:
        self._checked_at = self._clock()
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()


def watch_event_loop(loop: asyncio.AbstractEventLoop, dog: Watchdog, every_s: float = 1.0) -> None:
    """Have `loop` mark itself on `dog` every `every_s` (call on the loop): a loop that stops turning
    for `dog.limit_s` is stuck."""

    def mark() -> None:
        dog.begin("the event loop")
        loop.call_later(every_s, mark)

    mark()
