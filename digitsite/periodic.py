"""A daemon thread that runs one function every N seconds until it is stopped.

The background threads of the workers (heartbeat, model watcher, drawings' sweep) and the web's
watchdog are each one of these: `start`, `stop`, a stop event the waits are cut short by.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Periodic:
    """Runs `tick` every `every_s` in a daemon thread named `name`; `first_now`: the first tick at
    once rather than after one interval. `tick` must not raise (wrap what may fail); `on_exit` runs in
    the thread once it has stopped."""

    def __init__(
        self,
        name: str,
        every_s: float,
        tick: Callable[[], object],
        *,
        first_now: bool = False,
        on_exit: Callable[[], object] | None = None,
    ) -> None:
        self.every_s = every_s
        self._tick, self._first_now, self._on_exit = tick, first_now, on_exit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            if self._first_now and not self._stop.is_set():
                self._tick()
            while not self._stop.wait(self.every_s):
                self._tick()
        finally:
            if self._on_exit is not None:
                self._on_exit()
