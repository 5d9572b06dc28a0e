"""End-to-end benchmark: N concurrent WebSocket clients stream real drawings stroke by stroke.

Drawings are MNIST test digits traced into pen strokes (digits.data.strokes), sent in point batches
every --pace-ms like the page does (bench/load.py). Latency is measured per drawing from its last
stroke message to the prediction for that message. Prints predictions/s and latency p50/p95/p99,
errors, lost.

    python bench/e2e.py --clients 50                   # starts its own stack on a free port
    python bench/e2e.py --clients 20 --duration 30     # drawings back to back for 30 s
    python bench/e2e.py --url http://127.0.0.1:8000 --clients 1
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

from bench.load import DEFAULT_MNIST_DIR, load_run, make_drawings, report_lines, run_async  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: argparse.Namespace, base_url: str) -> None:
    count = args.drawings * args.clients if args.duration is None else max(200, 4 * args.clients)
    drawings = make_drawings(Path(args.data_dir), count, args.seed)
    result = run_async(
        load_run(
            base_url,
            drawings,
            clients=args.clients,
            per_client=args.drawings if args.duration is None else None,
            duration=args.duration,
            pace=args.pace_ms / 1000,
            batch=args.batch,
            timeout=args.timeout,
            seed=args.seed,
        )
    )
    print("\n".join(report_lines(result, pace_ms=args.pace_ms)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running service; without it a stack is started on a free port")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--drawings", type=int, default=40, help="drawings per client")
    parser.add_argument("--duration", type=float, help="seconds of drawings back to back (instead of --drawings)")
    parser.add_argument("--pace-ms", type=float, default=50.0, help="pause between messages (the page throttles to 50 ms)")
    parser.add_argument("--batch", type=int, default=8, help="points per stroke message")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=str(DEFAULT_MNIST_DIR))
    args = parser.parse_args()
    if args.url:
        run(args, args.url.rstrip("/"))
        return
    from bench.database import throwaway_database
    from scripts.stack import UNTHROTTLED, Stack, redis_prefix_clear

    redis_url, prefix = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13"), f"bench-{uuid.uuid4().hex[:8]}:"
    try:  # a prefix and a database of its own: never touches a running service's queues or drawings
        with (
            throwaway_database() as db_url,
            Stack(
                port=free_port(), redis_url=redis_url, env={"REDIS_PREFIX": prefix, "DATABASE_URL": db_url, **UNTHROTTLED}
            ) as stack,
        ):
            time.sleep(1.0)
            run(args, stack.url)
    finally:
        redis_prefix_clear(redis_url, prefix)


if __name__ == "__main__":
    main()
