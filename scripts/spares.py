"""Supervision of a stack's processes (scripts/stack.py): restarts with back-off, and the Celery workers' warm spares.

A spare is a process started with a worker's command and environment that has imported what the worker needs
(Python, Django, Celery, torch, the model) and waits on its stdin; a restart wakes it and it runs the worker's
command in-process (about 1 s instead of 3.5 s or more). `spare_main` is that process (`python -m scripts.stack
--spare CMD...`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

from prometheus_client.multiprocess import mark_process_dead

from scripts.processes import ProcessSpec, exit_description, log

SPARE_AFTER_S = 5.0  # a worker's spare starts once the worker has been up this long


class Supervision:
    """Stack's supervision (a mixin of scripts.stack.Stack, whose fields these are)."""

    procs: list[tuple[str, subprocess.Popen]]
    standby: dict[str, tuple[str, ProcessSpec]]
    _specs: dict[str, ProcessSpec]
    _lock: threading.RLock
    _stopping: threading.Event
    _supervisor: threading.Thread | None
    _metrics_dir: str | None

    if TYPE_CHECKING:  # Stack's own

        def _popen(self, name: str, spec: ProcessSpec, spare: bool = False) -> subprocess.Popen: ...

    # ---- supervision
    def _supervise_loop(self) -> None:
        while not self._stopping.wait(0.1):
            try:
                self.supervise_once()
            except Exception as exc:  # keep supervising the others; say what went wrong
                log(f"supervisor error: {exc!r}")

    def supervise_once(self, now: float | None = None) -> None:
        """Schedule the restart of each process in `procs` that exited; restart those due."""
        with self._lock:
            for i, (name, proc) in enumerate(self.procs):
                if self._stopping.is_set() or proc.poll() is None:
                    continue
                spec = self._specs[name]
                now = time.monotonic() if now is None else now
                if spec.restart_at is None:
                    if name.startswith("web") and self._metrics_dir:  # its open sockets count no more
                        mark_process_dead(proc.pid, self._metrics_dir)
                    uptime = now - spec.started_at
                    wait = spec.backoff.delay(uptime)
                    spec.restart_at = now + wait
                    log(
                        f"{name} (pid {proc.pid}) {exit_description(proc.returncode)} after {uptime:.1f} s; "
                        f"restart {spec.restarts + 1} in {wait:.1f} s"
                    )
                elif now >= spec.restart_at:
                    spec.restart_at = None
                    spec.restarts += 1
                    new, how = self._wake_spare(spec), "its warm spare"
                    if new is None:
                        new, how = self._popen(name, spec), "a new process"
                    self.procs[i] = (name, new)
                    log(f"{name} restarted as pid {new.pid}, {how} (restart {spec.restarts})")
            now = time.monotonic() if now is None else now
            for name, proc in self.procs:
                spec = self._specs[name]
                if spec.spare is not None and spec.spare.poll() is not None:
                    log(f"{name}'s spare {exit_description(spec.spare.returncode)}")
                    spec.spare.wait()
                    self._forget_spare(spec)
                if (
                    spec.wants_spare
                    and spec.spare is None
                    and proc.poll() is None
                    and now - spec.started_at >= SPARE_AFTER_S
                    and not self._stopping.is_set()
                ):
                    spec.spare = self._popen(name, spec, spare=True)

    def _wake_spare(self, spec: ProcessSpec) -> subprocess.Popen | None:
        """The spare, told to run the worker's command; None if there is none or it died."""
        spare = spec.spare
        self._forget_spare(spec)
        if spare is None or spare.stdin is None:
            return None
        with contextlib.suppress(OSError):  # it died (broken pipe): start a new process instead
            spare.stdin.write(b"run\n")
            spare.stdin.flush()
        with contextlib.suppress(OSError):
            spare.stdin.close()
        if spare.poll() is not None:
            spare.wait()
            return None
        spec.started_at = time.monotonic()
        return spare

    @staticmethod
    def _forget_spare(spec: ProcessSpec) -> None:
        spec.spare, spec.spare_loaded = None, False
        if spec.spare_ready is not None:
            os.close(spec.spare_ready)
            spec.spare_ready = None

    def spares_ready(self) -> bool:
        """Whether every supervised Celery worker has a spare that has loaded what it needs."""
        with self._lock:
            specs = [self._specs[name] for name, _ in self.procs if self._specs[name].wants_spare]
            if not all(self._spare_loaded(spec) for spec in specs):
                return False
            return self._supervisor is not None

    def standby_loading(self, queue: str) -> bool:
        """Whether `queue`'s standby is still loading (it takes a core for a few seconds)."""
        with self._lock:
            _, spec = self.standby.get(queue, (None, None))
            return spec is not None and spec.spare is not None and spec.spare.poll() is None and not self._spare_loaded(spec)

    def standby_ready(self) -> bool:
        """Whether the autoscaler keeps a standby for some queue, and each has loaded what it needs."""
        with self._lock:
            return bool(self.standby) and all(self._spare_loaded(spec) for _, spec in self.standby.values())

    @staticmethod
    def _spare_loaded(spec: ProcessSpec) -> bool:
        if not spec.spare_loaded and spec.spare_ready is not None:
            with contextlib.suppress(BlockingIOError):  # nothing yet
                spec.spare_loaded = os.read(spec.spare_ready, 16) == b"ready\n"  # b"": it died
        return spec.spare_loaded

    def restarts(self, name: str) -> int:
        """How many times supervision restarted process `name`."""
        with self._lock:
            return self._specs[name].restarts

    def _drop_spare(self, spec: ProcessSpec) -> None:
        spare = spec.spare
        self._forget_spare(spec)
        if spare is not None and spare.stdin is not None:
            with contextlib.suppress(OSError):
                spare.stdin.close()  # it exits


def spare_main(cmd: list[str]) -> None:
    """A Celery worker's warm spare: import what the worker needs, wait, then run `cmd` in-process.

    Exits without running it when stdin closes with nothing read (the stack stopped or is gone).
    """
    import celery.apps.worker  # what booting a worker imports
    import celery.concurrency.solo
    import celery.worker.consumer  # noqa: F401
    import django
    from celery.__main__ import main as celery_main

    from digitsite.celery import app  # sets DJANGO_SETTINGS_MODULE

    django.setup()
    app.loader.import_default_modules()  # worker.tasks
    # The model too, warmed up: a worker loads it as it starts (worker/tasks.py; ~1 s of CPU on this
    # machine, taken from the workers already serving when a spare is woken under load); a model
    # switched meanwhile is picked up by the worker's watcher within a second of its start.
    from django.db import connections

    from worker.model_registry import get_predictor, warm_up

    try:
        warm_up(get_predictor())
    except Exception as exc:  # the worker loads it itself then (and says why it cannot)
        log(f"spare: the model was not preloaded: {exc!r}")
    connections.close_all()
    ready = os.environ.pop("STACK_SPARE_READY_FD", None)
    if ready is not None:
        os.write(int(ready), b"ready\n")
        os.close(int(ready))
    if not sys.stdin.buffer.readline():
        return
    sys.argv = cmd
    celery_main()
