"""The flood scenario: one address floods uploads and health checks while others draw at the page's pace."""

from __future__ import annotations

import http.client
import multiprocessing
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.load import DEFAULT_MNIST_DIR, LoadResult, load_run, make_drawings, run_async
from bench.scenarios.health import crash_failures, stack_pids, verdict
from bench.scenarios.uploads import png
from scripts.stack import Stack

P95_RATIO_MAX = 2.0  # others' p95 under a flood, against unloaded
FLOODER = "127.0.0.2"  # loopback too, but another address to the per-address limits


def _flooder(port: int, source: str, threads: int, body: bytes, headers: dict[str, str], ready: Any, stop: Any, out: Any) -> None:
    """A process of its own (the measured clients' event loop must not share a GIL with it): half the
    threads upload, half check health, each request on a new connection, as fast as they can."""
    import threading

    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def hammer(kind: str) -> None:
        while not stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
            try:
                if kind == "upload":
                    conn.request("POST", "/api/predict", body=body, headers=headers)
                else:
                    conn.request("GET", "/healthz")
                resp = conn.getresponse()
                resp.read()
                key = f"{kind} {resp.status}"
            except OSError as exc:
                key = f"{kind} {type(exc).__name__}"
            finally:
                conn.close()
            with lock:
                counts[key] += 1

    workers = [threading.Thread(target=hammer, args=("upload" if i % 2 == 0 else "health",), daemon=True) for i in range(threads)]
    ready.set()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    counts["cpu_ms"] = int(time.process_time() * 1000)  # what flooding cost this machine's cores itself
    out.put(dict(counts))


@dataclass
class FloodReport:
    clients: int
    seconds: float
    quiet: LoadResult
    flooded: LoadResult
    flood: Counter[str]  # "<upload|health> <status>" -> requests
    flood_s: float  # how long the flooder ran
    flood_cpu_ms: int  # the flooder's own CPU time (it shares the machine's cores with the service)
    crashes: list[str]

    @property
    def ratio(self) -> float:
        return self.flooded.latency(95) / self.quiet.latency(95)

    @property
    def throttled(self) -> int:
        return sum(n for key, n in self.flood.items() if key.endswith(" 429"))

    @property
    def failures(self) -> list[str]:
        f = list(self.crashes)
        for name, r in (("unloaded", self.quiet), ("flooded", self.flooded)):
            if r.stats.errors or r.stats.lost:
                f.append(f"{name}: {len(r.stats.errors)} errors {sorted(set(r.stats.errors))}, {r.stats.lost} lost")
        if not self.ratio <= P95_RATIO_MAX:
            f.append(f"p95 {self.ratio:.2f}x unloaded")
        if not self.throttled:
            f.append("the flooder was never throttled (no 429)")
        return f

    def lines(self) -> list[str]:
        total = sum(self.flood.values())
        return [
            f"flood: {self.clients} page-paced clients (127.0.0.1), {self.seconds:g} s unloaded then {self.seconds:g} s "
            f"while {FLOODER} floods uploads and health checks",
            f"  unloaded: p50 {self.quiet.latency(50):.1f} ms, p95 {self.quiet.latency(95):.1f} ms "
            f"({len(self.quiet.stats.latencies)} drawings, {len(self.quiet.stats.errors)} errors, {self.quiet.stats.lost} lost)",
            f"  flooded:  p50 {self.flooded.latency(50):.1f} ms, p95 {self.flooded.latency(95):.1f} ms "
            f"({len(self.flooded.stats.latencies)} drawings, {len(self.flooded.stats.errors)} errors, "
            f"{self.flooded.stats.lost} lost)",
            f"  p95 ratio {self.ratio:.2f}x; flooder: {total} requests in {self.flood_s:.1f} s "
            f"({total / self.flood_s:.0f}/s), {self.throttled} got 429: "
            + ", ".join(f"{k}: {v}" for k, v in sorted(self.flood.items())),
            f"  the flooder's own CPU: {self.flood_cpu_ms / 1000:.1f} s in {self.flood_s:.1f} s "
            f"({self.flood_cpu_ms / 10 / self.flood_s:.0f}% of one core, on the service's machine)",
            verdict(self.failures, f"others' p95 <= {P95_RATIO_MAX:g}x unloaded, the flooder throttled (429), no crash"),
        ]


def flood(
    stack: Stack, *, clients: int = 5, seconds: float = 20.0, threads: int = 8, data_dir: Path = DEFAULT_MNIST_DIR, seed: int = 0
) -> FloodReport:
    """Others' final-prediction p95 unloaded, then while FLOODER floods (the stack must run its default limits)."""
    pids = stack_pids(stack)
    drawings = make_drawings(data_dir, max(60, 4 * clients), seed)
    quiet = run_async(load_run(stack.url, drawings, clients=clients, duration=seconds, seed=seed))
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="d.png"\r\nContent-Type: image/png\r\n\r\n'
        ).encode()
        + png(112, 112)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    ctx = multiprocessing.get_context("spawn")
    ready, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(
        target=_flooder,
        daemon=True,
        args=(
            stack.port,
            FLOODER,
            threads,
            body,
            {"Content-Type": f"multipart/form-data; boundary={boundary}"},
            ready,
            stop,
            out,
        ),
    )
    proc.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the flooder did not start")
        flood_started = time.perf_counter()
        time.sleep(1.0)  # the flood is on before the measurement starts
        flooded = run_async(load_run(stack.url, drawings, clients=clients, duration=seconds, seed=seed + 1))
    finally:
        stop.set()
    flood_s = time.perf_counter() - flood_started
    counts: Counter[str] = Counter(out.get(timeout=30))
    cpu_ms = counts.pop("cpu_ms", 0)
    proc.join(10)
    return FloodReport(clients, seconds, quiet, flooded, counts, flood_s, cpu_ms, crash_failures(stack, pids))
