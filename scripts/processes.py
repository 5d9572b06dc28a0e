"""The processes of a stack (scripts/stack.py): their command lines, how one is told apart and restarted, and the
Redis helpers the stack, the test fixtures, the screenshot scripts and every bench share."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

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
class ProcessSpec:
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


def terminate(procs: list[subprocess.Popen], timeout: float) -> None:
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


def log(message: str) -> None:
    print(f"stack: {message}", file=sys.stderr, flush=True)
