"""What Celery's events cost the live path: the same load on stacks of the bench's own, alternating modes.

    python bench/events_cost.py                      # 1 client, 40 drawings, 2 rounds of every mode
    python bench/events_cost.py --clients 20 --duration 20

Modes: `quiet` (workers started --without-heartbeat, no events at all: the flags before docs/operations.md),
`default` (the worker heartbeats the tools need, one event per worker every 2 s; no task events), and
`events` (CELERY_EVENTS=1: task-received, task-started and task-succeeded for every task). Prints, per
run, the latency figures of bench/e2e.py and the CPU time of the worker and web processes per prediction
(from /proc, so that a change too small to see in latency on a busy machine still shows).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import DEFAULT_MNIST_DIR, load_run, make_drawings, pct, run_async  # noqa: E402

MODES = ("quiet", "default", "events")
TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S  # utime + stime


def one_run(mode: str, args: argparse.Namespace, db_url: str) -> str:
    from scripts.stack import UNTHROTTLED, Stack, redis_prefix_clear

    worker_args = ("--without-heartbeat",) if mode == "quiet" else ()
    redis_url, prefix = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13"), f"bench-{uuid.uuid4().hex[:8]}:"
    env = {"REDIS_PREFIX": prefix, "DATABASE_URL": db_url, "CELERY_EVENTS": "1" if mode == "events" else "0", **UNTHROTTLED}
    count = args.drawings * args.clients if args.duration is None else max(200, 4 * args.clients)
    drawings = make_drawings(Path(args.data_dir), count, args.seed)
    try:
        with Stack(port=free_port(), redis_url=redis_url, env=env, worker_args=worker_args) as stack:
            time.sleep(1.0)
            procs = {name: proc.pid for name, proc in stack.procs if name.startswith(("worker", "web"))}
            before = {name: cpu_s(pid) for name, pid in procs.items()}
            result = run_async(
                load_run(
                    stack.url,
                    drawings,
                    clients=args.clients,
                    per_client=args.drawings if args.duration is None else None,
                    duration=args.duration,
                    pace=args.pace_ms / 1000,
                    batch=8,
                    timeout=10.0,
                    seed=args.seed,
                )
            )
            used = {name: cpu_s(pid) - before[name] for name, pid in procs.items()}
    finally:
        redis_prefix_clear(redis_url, prefix)
    stats = result.stats
    per = max(1, stats.predictions)
    cpu = "  ".join(f"{name}={1000 * s / per:.2f}" for name, s in sorted(used.items()))
    phases = "  ".join(f"{name}={pct(values, 50):.2f}" for name, values in sorted(stats.phases.items()) if values)
    return (
        f"{mode:8} predictions={stats.predictions} messages={stats.messages} lost={stats.lost} "
        f"errors={len(stats.errors)}  p50={pct(stats.latencies, 50):.2f} p95={pct(stats.latencies, 95):.2f} ms  "
        f"server p50={pct(stats.server_ms, 50):.2f} p95={pct(stats.server_ms, 95):.2f} ms  "
        f"CPU-ms per prediction: {cpu}  (total CPU-s: "
        + " ".join(f"{name}={s:.2f}" for name, s in sorted(used.items()))
        + f")  phases, median ms: {phases}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--drawings", type=int, default=40, help="drawings per client")
    parser.add_argument("--duration", type=float, help="seconds of drawings back to back (instead of --drawings)")
    parser.add_argument("--pace-ms", type=float, default=50.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=str(DEFAULT_MNIST_DIR))
    args = parser.parse_args()
    from bench.database import throwaway_database

    with throwaway_database() as db_url:
        for round_ in range(1, args.rounds + 1):
            for mode in args.modes.split(","):
                line = one_run(mode, args, db_url)
                load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
                print(f"round {round_} {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} load {load}  {line}", flush=True)


if __name__ == "__main__":
    main()
