"""How long a /metrics scrape takes (the target: 20 ms), idle and while clients draw.

Starts the whole stack (make run's processes: WEB_PROCESSES web processes in multiprocess mode) on a
throwaway database, scrapes /metrics --scrapes times idle, then again while --clients WebSocket
clients stream drawings (bench/load.py), and prints p50, p95 and max of each, with the body's size.

    python bench/metrics_scrape.py [--clients 10] [--scrapes 200] [--web-processes 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.e2e import free_port  # noqa: E402
from bench.load import DEFAULT_MNIST_DIR, load_run, make_drawings, run_async  # noqa: E402


def scrape_times(url: str, scrapes: int) -> tuple[list[float], int]:
    times, size = [], 0
    for _ in range(scrapes):
        started = time.perf_counter()
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
            size = len(resp.read())
        times.append((time.perf_counter() - started) * 1000)
        time.sleep(0.01)
    return times, size


def line(what: str, times: list[float], size: int) -> str:
    times = sorted(times)
    p95 = times[int(0.95 * (len(times) - 1))]
    return (
        f"{what}: {len(times)} scrapes, p50 {statistics.median(times):.1f} ms, p95 {p95:.1f} ms, "
        f"max {times[-1]:.1f} ms, {size / 1024:.1f} KB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--web-processes", type=int, default=1)
    parser.add_argument("--data-dir", default=str(DEFAULT_MNIST_DIR))
    args = parser.parse_args()
    from bench.database import throwaway_database
    from scripts.stack import UNTHROTTLED, Stack, redis_prefix_clear

    redis_url, prefix = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13"), f"bench-{uuid.uuid4().hex[:8]}:"
    drawings = make_drawings(Path(args.data_dir), max(200, 8 * args.clients), 0)
    try:
        with (
            throwaway_database() as db_url,
            Stack(
                port=free_port(),
                redis_url=redis_url,
                web_processes=args.web_processes,
                env={"REDIS_PREFIX": prefix, "DATABASE_URL": db_url, **UNTHROTTLED},
            ) as stack,
        ):
            time.sleep(2.0)
            print(
                f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {os.cpu_count()} cores, "
                f"{args.web_processes} web process(es)"
            )
            print(line("idle", *scrape_times(stack.url, args.scrapes)))
            load = threading.Thread(
                target=lambda: run_async(
                    load_run(
                        stack.url,
                        drawings,
                        clients=args.clients,
                        per_client=None,
                        duration=30.0,
                        pace=0.05,
                        batch=8,
                        timeout=10.0,
                        seed=0,
                    )
                ),
                daemon=True,
            )
            load.start()
            time.sleep(3.0)
            print(line(f"{args.clients} clients drawing", *scrape_times(stack.url, args.scrapes)))
            load.join()
    finally:
        redis_prefix_clear(redis_url, prefix)


if __name__ == "__main__":
    main()
