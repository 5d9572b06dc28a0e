"""Adding and retiring a stack's Celery workers while it runs (the autoscaler's side of scripts/stack.py):
a queue's standby (a loaded spare of the worker it would add next), and a retired worker's drain, which loses
no message (Celery remote control, then a warm shutdown)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from typing import TYPE_CHECKING

import redis

from scripts.processes import ProcessSpec, exit_description, log, terminate, worker_command


class WorkerScaling:
    """Stack's scaling (a mixin of scripts.stack.Stack, whose fields and methods these are)."""

    redis_url: str
    procs: list[tuple[str, subprocess.Popen]]
    retiring: dict[str, subprocess.Popen]
    standby: dict[str, tuple[str, ProcessSpec]]
    worker_args: tuple[str, ...]
    quiet: bool
    _specs: dict[str, ProcessSpec]
    _lock: threading.RLock
    _stopping: threading.Event

    if TYPE_CHECKING:  # Stack's own

        def _env(self) -> dict[str, str]: ...

        def _popen(self, name: str, spec: ProcessSpec, spare: bool = False) -> subprocess.Popen: ...

        def _free_index(self, queue: str) -> int: ...

        def add_worker(self, queue: str, spare: bool = True) -> subprocess.Popen: ...

        def _wake_spare(self, spec: ProcessSpec) -> subprocess.Popen | None: ...

        def _drop_spare(self, spec: ProcessSpec) -> None: ...

        @staticmethod
        def _spare_loaded(spec: ProcessSpec) -> bool: ...

    def worker_command(self, queue: str, index: int) -> list[str]:
        """A worker's command line, with this stack's `worker_args` (and Celery's --quiet: no start-up
        banner, when the stack is `quiet`)."""
        cmd = worker_command(queue, index)
        if self.quiet:
            cmd.insert(cmd.index("worker"), "--quiet")  # a global option: before the subcommand
        return [*cmd, *self.worker_args]

    def scale_up(self, queue: str) -> str | None:
        """One more worker on `queue` without a spare, for the autoscaler: its Celery node name. It is
        the queue's standby, woken (about 1 s), when one has loaded; else a new process (3.5 s or more)."""
        with self._lock:
            name, spec = self.standby.pop(queue, (None, None))
            if name is not None and spec is not None:
                loaded = self._spare_loaded(spec)
                proc = self._wake_spare(spec) if loaded else None
                if proc is not None:
                    self._specs[name] = spec
                    self.procs.append((name, proc))
                    log(f"{name} woken from standby as pid {proc.pid}")
                    return spec.node_name
                self._drop_spare(spec)
            self.add_worker(queue, spare=False)
            return self._specs[self.procs[-1][0]].node_name

    def keep_standby(self, queue: str, wanted: bool, may_start: bool = True) -> None:
        """Start a standby for `queue` (a spare of the worker it would add next, scripts/autoscale.py)
        when `wanted` and `may_start`, or end it when not `wanted`; one that died is forgotten."""
        with self._lock:
            name, spec = self.standby.get(queue, (None, None))
            if spec is not None and (not wanted or spec.spare is None or spec.spare.poll() is not None):
                self.standby.pop(queue)
                self._drop_spare(spec)
                spec = None
            if wanted and may_start and spec is None and not self._stopping.is_set():
                index = self._free_index(queue)
                name = f"worker-{queue}{index}"
                spec = ProcessSpec(self.worker_command(queue, index), self._env(), spare_wanted=False)
                spec.spare = self._popen(name, spec, spare=True)
                self.standby[queue] = (name, spec)

    def worker_names(self, queue: str) -> list[str]:
        """The Celery node names of the workers on `queue` (booting ones too; retiring ones not)."""
        with self._lock:
            specs = [self._specs[name] for name, _ in self.procs if name.startswith(f"worker-{queue}")]
            return [n for n in (spec.node_name for spec in specs) if n is not None]

    def retire_worker(self, queue: str, wait: bool = False) -> str | None:
        """Take the newest worker on `queue` out of service without losing a message; its node name,
        or None when the queue has only one worker. It leaves supervision at once (nothing restarts
        it), then drains in a thread of its own (wait=True: here): told to stop consuming (Celery
        remote control, `cancel_consumer`: a solo worker answers between tasks, so the answer says it
        has no task under way and takes no more), then SIGTERM (warm shutdown: anything it still
        held goes back to the queue), SIGKILL after WORKER_TASK_TIME_LIMIT_S + 10 s. Should the
        control command go unanswered, it waits until the worker's busy clock stands still instead."""
        with self._lock:
            mine = [(name, proc) for name, proc in self.procs if name.startswith(f"worker-{queue}")]
            if len(mine) < 2:
                return None
            name, proc = max(mine, key=lambda item: int(item[0].removeprefix(f"worker-{queue}")))
            self.procs.remove((name, proc))
            spec = self._specs.pop(name)
            self._drop_spare(spec)
            self.retiring[name] = proc
        node = spec.node_name or name
        drain = threading.Thread(target=self._drain, args=(name, proc, queue, node), name=f"drain-{name}", daemon=True)
        drain.start()
        if wait:
            drain.join()
        return node

    def _drain(self, name: str, proc: subprocess.Popen, queue: str, node: str) -> None:
        env = self._env()
        try:
            began = time.monotonic()
            stopped = cancel_consumer(self.redis_url, env.get("REDIS_PREFIX", ""), queue, node)
            log(
                f"{name} ({node}) stopped consuming {queue} after {time.monotonic() - began:.2f} s"
                if stopped
                else f"{name} ({node}): cancel_consumer unanswered after {time.monotonic() - began:.1f} s"
            )
            if not stopped:  # control not working: wait until it has been idle a while instead
                wait_idle(self.redis_url, env.get("REDIS_PREFIX", ""), node)
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
            terminate([proc], float(env.get("WORKER_TASK_TIME_LIMIT_S", "60")) + 10)
            log(f"{name} ({node}) retired after {time.monotonic() - began:.1f} s: {exit_description(proc.returncode)}")
        except Exception as exc:
            log(f"{name}: drain failed: {exc!r}")
            terminate([proc], 10)
        finally:
            with self._lock:
                self.retiring.pop(name, None)


def cancel_consumer(redis_url: str, prefix: str, queue: str, node: str, timeout: float = 3.0) -> bool:
    """Tell worker `node` to stop consuming `queue` (Celery remote control over the stack's broker,
    configured as the workers are: digitsite.broker's transport, the key prefix, msgpack); whether it
    answered. A solo worker handles control messages between tasks: its answer means it is idle."""
    from celery import Celery

    from digitsite.broker import use_as_redis_transport

    use_as_redis_transport()
    app = Celery("digits-stack-control", broker=redis_url, set_as_current=False)
    app.conf.update(
        broker_transport_options={"ack_emulation": False, **({"global_keyprefix": prefix} if prefix else {})},
        task_serializer="msgpack",
        accept_content=["msgpack"],
        result_accept_content=["msgpack"],
    )
    try:
        replies = app.control.cancel_consumer(queue, destination=[node], reply=True, timeout=timeout)
    finally:
        app.close()
    return any(node in reply for reply in replies or [])


def wait_idle(redis_url: str, prefix: str, node: str, still_s: float = 2.5, timeout: float = 60.0) -> None:
    """Until worker `node`'s busy clock (its heartbeats) has not moved for `still_s`, or it is gone."""
    from contract.heartbeats import busy_key, heartbeat_key

    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    key = busy_key(heartbeat_key(prefix))
    deadline = time.monotonic() + timeout
    last, since = client.hget(key, node), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = client.hget(key, node)
        if now is None:
            return
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= still_s:
            return
