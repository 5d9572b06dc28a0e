"""What scaling while running (scripts/autoscale.py) buys and costs on this machine; prints figures.

1. Capacity with a fixed 1, 2, 3 inference workers (one stack each, started one after the other):
   for each client count of a ladder, predictions/s and p95 (last stroke -> its prediction, client
   side; bench/load.py's clients at the page's pace), the most clients with p95 <= --p95-ms, and
   each worker's resident memory (its heartbeat, worker.heartbeat.worker_details).
2. Autoscaling (AUTOSCALE inference:1-N, the default policy unless AUTOSCALE_* are set): --clients
   clients start drawing on a stack running 1 inference worker; later all but --light of them stop,
   the rest go on drawing. It prints when the autoscaler added a worker and when that worker took
   its first job (from the load's start), when one was retired (from the load's drop), p95 over the
   5 s before, the 5 s after and the 5-15 s after each change, lost and errors; the standby's memory.

    python bench/autoscale.py                           # about 4 minutes
    python bench/autoscale.py --skip-capacity --cold    # only part 2, adding workers cold (no standby)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench.database import throwaway_database  # noqa: E402
from bench.load import DEFAULT_MNIST_DIR, Drawing, Stats, client, load_run, make_drawings, pct, run_async  # noqa: E402
from contract.heartbeats import WorkerDetail, heartbeat_key, worker_details  # noqa: E402
from scripts.stack import UNTHROTTLED, Stack, redis_prefix_clear  # noqa: E402

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13")
# load.client reads its deadline once: each client reconnects every CHUNK_S so that it sees the phases change
CHUNK_S = 3.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def bench_stack(db_url: str, **kwargs: object) -> Iterator[Stack]:
    prefix = f"bench-as-{uuid.uuid4().hex[:8]}:"
    logs = Path(tempfile.mkdtemp(prefix="bench-autoscale-logs-"))
    print(f"  (the stack's logs: {logs})", flush=True)
    stack = Stack(
        port=free_port(),
        redis_url=REDIS_URL,
        env={"REDIS_PREFIX": prefix, "DATABASE_URL": db_url, **UNTHROTTLED},
        log_dir=logs,
        **kwargs,
    )  # type: ignore[arg-type]
    try:
        with stack:
            yield stack
    finally:
        redis_prefix_clear(REDIS_URL, prefix)


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


def details(stack: Stack) -> list[WorkerDetail]:
    return worker_details(redis.Redis.from_url(stack.redis_url), heartbeat_key(stack.env["REDIS_PREFIX"]))


def capacity(db_url: str, drawings: list[Drawing], args: argparse.Namespace) -> None:
    print(f"\n== capacity with a fixed number of inference workers ({args.step_s:g} s per step, p95 bound {args.p95_ms:g} ms)")
    for n in range(1, args.max_workers + 1):
        with bench_stack(db_url, workers={"preprocess": 1, "inference": n}) as stack:
            time.sleep(2.0)  # every worker beating
            best, failed = 0, 0
            for clients in args.ladder:
                r = run_async(load_run(stack.url, drawings, clients=clients, duration=args.step_s))
                ok = r.latency(95) <= args.p95_ms and not r.stats.errors and not r.stats.lost
                best = clients if ok else best
                print(
                    f"  {n} worker(s) {clients:3d} clients: {r.predictions_per_s:6.1f} predictions/s  "
                    f"p50={r.latency(50):6.1f} p95={r.latency(95):6.1f} ms  errors={len(r.stats.errors)} lost={r.stats.lost}",
                    flush=True,
                )
                failed = 0 if ok else failed + 1
                if failed == 2:  # two steps in a row over the bound: the next ones would be too
                    break
            rss = [f"{d.name}={d.rss_bytes / 2**20:.0f}MiB" for d in details(stack) if d.rss_bytes]
            print(f"  {n} worker(s): capacity {best} clients at p95 <= {args.p95_ms:g} ms; RSS {' '.join(rss)}", flush=True)


async def scaling_run(stack: Stack, drawings: list[Drawing], args: argparse.Namespace) -> None:
    assert stack.autoscaler is not None
    stats = Stats()
    marks: list[tuple[float, int]] = []  # (time, latencies so far): when each latency came
    first_job: dict[str, float] = {}
    beats = redis.Redis.from_url(stack.redis_url)
    key = heartbeat_key(stack.env["REDIS_PREFIX"])
    start = time.perf_counter()
    heavy_until = start + 3600.0
    end = start + 3600.0

    def now() -> float:
        return time.perf_counter() - start

    async def watch() -> None:
        nonlocal heavy_until, end
        events = stack.autoscaler.events if stack.autoscaler else []
        while time.perf_counter() < end:
            marks.append((now(), len(stats.latencies)))
            for d in worker_details(beats, key):
                if d.busy_s and d.name not in first_job:
                    first_job[d.name] = now()
            ups = [e for e in events if e.delta > 0]
            if ups and heavy_until > time.perf_counter() + args.after_s and any(e.worker in first_job for e in ups):
                heavy_until = time.perf_counter() + args.after_s  # the added worker works: the load drops soon
            downs = [e for e in events if e.delta < 0]
            if downs and end > time.perf_counter() + args.after_s:
                end = time.perf_counter() + args.after_s
            if now() > args.max_s:
                end = time.perf_counter()
            await asyncio.sleep(0.1)

    mono0 = time.monotonic() - (time.perf_counter() - start)  # monotonic time of `start` (events use monotonic)

    async def heavy(cid: int) -> None:  # until heavy_until, then stops; the light clients go on
        while time.perf_counter() < min(heavy_until, end):
            await client(
                stack.url,
                cid,
                drawings[cid :: args.clients],
                stats,
                pace=0.05,
                batch=8,
                timeout=10.0,
                deadline=min(time.perf_counter() + CHUNK_S, heavy_until, end),
                stagger=0.05 * cid / args.clients,
            )

    async def light(cid: int) -> None:
        while time.perf_counter() < end:
            await client(
                stack.url,
                cid,
                drawings[cid :: args.clients],
                stats,
                pace=0.05,
                batch=8,
                timeout=10.0,
                deadline=min(time.perf_counter() + CHUNK_S, end),
                stagger=0.05 * cid / args.clients,
            )

    for queue, (_, spec) in stack.standby.items():
        if spec.spare is not None:
            print(f"  {queue} standby (a loaded spare, pid {spec.spare.pid}): RSS {rss_mib(spec.spare.pid):.0f} MiB")
    await asyncio.gather(watch(), *(light(c) if c < args.light else heavy(c) for c in range(args.clients)))
    events = [(e.at - mono0, e) for e in stack.autoscaler.events]

    def p95(t0: float, t1: float) -> str:
        lo = next((n for t, n in marks if t >= t0), len(stats.latencies))
        hi = next((n for t, n in marks if t >= t1), len(stats.latencies))
        return f"{pct(stats.latencies[lo:hi], 95):6.1f} ms ({hi - lo} drawings)"

    drop = heavy_until - start
    print(
        f"  load: {args.clients} clients from 0 s, {args.light} of them after {drop:.1f} s; "
        f"drawings={len(stats.latencies)} lost={stats.lost} errors={len(stats.errors)} {sorted(set(stats.errors))}"
    )
    for at, e in events:
        took = first_job.get(e.worker or "")
        what = (
            f"added {e.worker} at {at:.1f} s from the load's start; its first job at "
            f"{took:.1f} s ({took - at:.1f} s after it was added)"
            if e.delta > 0 and took is not None
            else f"added {e.worker} at {at:.1f} s; no job seen"
            if e.delta > 0
            else f"retired {e.worker} at {at:.1f} s, {at - drop:.1f} s after the load dropped"
        )
        print(f"  {what}  [{e.reason}]")
        print(f"    p95 5 s before: {p95(at - 5, at)}  0-5 s after: {p95(at, at + 5)}  5-15 s after: {p95(at + 5, at + 15)}")
    print(f"  workers at the end: {stack.worker_names('inference')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ladder", type=int, nargs="+", default=[5, 10, 15, 20, 30, 40])
    parser.add_argument("--step-s", type=float, default=8.0)
    parser.add_argument("--p95-ms", type=float, default=50.0)
    parser.add_argument("--max-workers", type=int, default=3)
    parser.add_argument("--clients", type=int, default=20, help="clients of the scaling run's heavy phase")
    parser.add_argument("--light", type=int, default=3, help="clients that go on drawing after the drop")
    parser.add_argument("--after-s", type=float, default=15.0, help="load kept this long after a change")
    parser.add_argument("--max-s", type=float, default=150.0, help="the scaling run's longest")
    parser.add_argument("--cold", action="store_true", help="the scaling run without a standby (AUTOSCALE_STANDBY=0)")
    parser.add_argument("--skip-capacity", action="store_true")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--data-dir", default=str(DEFAULT_MNIST_DIR))
    args = parser.parse_args()
    print(
        f"bench/autoscale.py {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    drawings = make_drawings(Path(args.data_dir), 400, 0)
    with throwaway_database() as db_url:
        if not args.skip_capacity:
            capacity(db_url, drawings, args)
        if args.skip_scaling:
            return
        print(f"\n== autoscaling inference:1-{args.max_workers}{' without a standby' if args.cold else ''}")
        if args.cold:
            os.environ["AUTOSCALE_STANDBY"] = "0"
        with bench_stack(db_url, workers={"preprocess": 1}, autoscale={"inference": (1, args.max_workers)}) as stack:
            time.sleep(2.0)
            deadline = time.monotonic() + 30
            while not args.cold and not stack.standby_ready() and time.monotonic() < deadline:
                time.sleep(0.2)
            run_async(scaling_run(stack, drawings, args))


if __name__ == "__main__":
    main()
