"""Reliability benchmark (issue 12): the real service under a long soak, hostile input and a flood.

Each scenario starts the service as `make run` does (`scripts.stack.Stack`, supervised, with a Redis
key prefix and a throwaway database of its own), prints its figures, then one verdict line against
the issue's target:

    python bench/reliability.py soak [--clients 100 --seconds 600]   # page-paced drawing, every 5th submitted
    python bench/reliability.py fuzz [--frames 2000]                  # hostile frames, uploads, 100 MB bodies
    python bench/reliability.py flood [--clients 5 --seconds 20]      # one address floods, others draw

(the throwaway database is made on DATABASE_URL's server, as Django's test databases are; REDIS_URL
defaults to redis://127.0.0.1:6379/13)

- soak: 0 errors, 0 lost (final predictions and `stored` acknowledgements), every process's RSS at
  most 10% above its size after warm-up, no more Redis keys without an expiry nor channels under
  the stack's prefix than before, stored rows = acknowledged submits.
- fuzz: every frame, upload and 100 MB body answered with an error (a protocol `error`, an HTTP 4xx
  JSON error) or a documented close, no process crashed or restarted, RSS flat (<= 10%).
- flood: 5 page-paced clients' final-prediction p95 while 127.0.0.2 floods uploads and health checks
  within 2x of their unloaded p95; the flooder is throttled (429). Default limits here; the other
  scenarios' clients share one address, so their stacks run without the per-address limits
  (ONE_ADDRESS).
The scenario functions take a running Stack, so tests/bench/test_reliability.py runs them small.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


from bench.database import throwaway_database  # noqa: E402
from bench.load import DEFAULT_MNIST_DIR  # noqa: E402
from bench.procstat import machine_line  # noqa: E402
from bench.scenarios.flood import FloodReport, flood  # noqa: E402
from bench.scenarios.fuzz import FuzzReport, fuzz  # noqa: E402
from bench.scenarios.health import stack_pids  # noqa: E402
from bench.scenarios.soak import SoakReport, soak  # noqa: E402
from scripts.stack import UNTHROTTLED, Stack  # noqa: E402

# UNTHROTTLED leaves the per-address message budget (1000/s) on, and 100 page-paced clients on one
# address send ~2000/s: lifted too where all clients share 127.0.0.1 (each socket keeps its own 100/s).
ONE_ADDRESS = {**UNTHROTTLED, "WS_ADDRESS_RATE_PER_SECOND": "1000000", "WS_ADDRESS_RATE_BURST": "2000000"}


# ---- the command line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="scenario", required=True)
    p = sub.add_parser("soak", help="clients drawing and submitting for a long time")
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--warmup", type=float, help="seconds before the reference RSS sample (default min(60, seconds/4))")
    p.add_argument("--submit-every", type=int, default=5)
    p = sub.add_parser("fuzz", help="hostile frames, uploads and bodies")
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--sockets", type=int, default=8)
    p.add_argument("--upload-rounds", type=int, default=3)
    p.add_argument("--body-mb", type=float, default=100.0)
    p = sub.add_parser("flood", help="others' latency while one address floods")
    p.add_argument("--clients", type=int, default=5)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--threads", type=int, default=8)
    for p in sub.choices.values():
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--data-dir", default=str(DEFAULT_MNIST_DIR))
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13")
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    print(machine_line(ROOT), flush=True)
    from bench.e2e import free_port
    from scripts.stack import redis_prefix_clear

    with throwaway_database() as db_url:
        env = {"REDIS_PREFIX": prefix, "DATABASE_URL": db_url, **({} if args.scenario == "flood" else ONE_ADDRESS)}
        stack = Stack(
            port=free_port(),
            redis_url=redis_url,
            env=env,
            supervise=True,
            log_dir=Path(os.environ.get("TMPDIR", "/tmp")) / f"reliability-{prefix[:-1]}",
        )
        try:
            stack.start(timeout=120)
            deadline = time.monotonic() + 60
            while not stack.spares_ready() and time.monotonic() < deadline:
                time.sleep(0.5)  # the workers' warm spares boot (torch) before anything is measured
            print(
                f"stack: {', '.join(f'{n} pid {p}' for n, p in stack_pids(stack).items())}; logs in {stack.log_dir}", flush=True
            )
            report: SoakReport | FuzzReport | FloodReport
            if args.scenario == "soak":
                report = soak(
                    stack,
                    clients=args.clients,
                    seconds=args.seconds,
                    warmup_s=args.warmup,
                    submit_every=args.submit_every,
                    data_dir=Path(args.data_dir),
                    seed=args.seed,
                )
            elif args.scenario == "fuzz":
                report = fuzz(
                    stack,
                    frames=args.frames,
                    sockets=args.sockets,
                    upload_rounds=args.upload_rounds,
                    body_mb=args.body_mb,
                    seed=args.seed,
                )
            else:
                report = flood(
                    stack,
                    clients=args.clients,
                    seconds=args.seconds,
                    threads=args.threads,
                    data_dir=Path(args.data_dir),
                    seed=args.seed,
                )
            print("\n".join(report.lines()), flush=True)
        finally:
            stack.stop()
            redis_prefix_clear(redis_url, prefix)


if __name__ == "__main__":
    main()
