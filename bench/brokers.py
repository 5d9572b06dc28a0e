"""Redis or RabbitMQ as Celery's broker: the live path and the capacity of both, in one run.

Two stacks as `make run` starts them (scripts.stack: daphne, one Celery worker per queue), one on each
broker, both up for the whole run, on one database (bench/database.py) and one Redis (the channel
layer, heartbeats: Redis serves both stacks, each under its own key prefix):
- redis: the default (BROKER_URL unset: the broker is REDIS_URL, batches pushed straight into its
  lists, PUBLISH_VIA=redis);
- rabbitmq: BROKER_URL=amqp://... on a virtual host of its own on the machine's RabbitMQ (made with
  rabbitmqctl, deleted afterwards); batches sent with Celery's send_task (PUBLISH_VIA=celery);
- redis-celery (only when named in --brokers): Redis as the broker, batches sent with send_task as on
  RabbitMQ, which tells the broker's share of a difference from the publishing's.
The measurements alternate between them (never both loaded at once; the order turns every step), so
a noisy minute on a shared machine falls on both: the 1-client latency in `--single-rounds` halves
(ABBA), then a capacity search (bench/compare.py's: the most clients whose final-prediction p95 stays
<= --p95-ms with no error and nothing lost) climbing the ladder on both side by side, then
bisecting each. CPU-ms are summed over each stack's processes, Redis and the RabbitMQ server.

    python bench/brokers.py                   # ~6-8 minutes on 2 cores
    python bench/brokers.py --step-s 8 --single-s 8 --ladder 10,20,40
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.database import throwaway_database  # noqa: E402
from bench.load import Drawing, make_drawings, pct  # noqa: E402
from bench.procstat import listening_pid, machine_line  # noqa: E402
from bench.steps import HEADER, StackSystem, Step, add_load_arguments, free_port, interrupt, measure, step_row, warm_up  # noqa: E402

DEFAULT_LADDER = (10, 20, 40, 60, 80, 100, 120, 160)


def rabbitmqctl(*args: str) -> None:
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    subprocess.run([ctl, *args], check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def rabbitmq_vhost(base_url: str, user: str) -> Iterator[str]:
    """A virtual host of the bench's own on the machine's RabbitMQ, as a broker URL; deleted afterwards."""
    vhost = f"bench-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        yield f"{base_url.rstrip('/')}/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


class BrokerStack(StackSystem):
    """One stack on a broker: `broker_url` None for Redis (the default), else BROKER_URL."""

    def __init__(
        self,
        name: str,
        *,
        db_url: str,
        redis_url: str,
        broker_url: str | None,
        web_processes: int | None,
        rabbitmq_port: int,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        from scripts.stack import UNTHROTTLED, Stack, default_web_processes

        self.rabbitmq_port = rabbitmq_port
        prefix = f"bench-{name}-{uuid.uuid4().hex[:8]}:"
        env = {
            "REDIS_PREFIX": prefix,
            "DATABASE_URL": db_url,
            **UNTHROTTLED,
            **({"BROKER_URL": broker_url} if broker_url else {}),
            **(extra_env or {}),
        }
        self.web_processes = web_processes or default_web_processes()
        stack = Stack(
            port=free_port(),
            redis_url=redis_url,
            env=env,
            web_processes=self.web_processes,
            log_dir=Path(tempfile.mkdtemp(prefix=f"bench-{name}-")),
        )
        super().__init__(name, stack, redis_url=redis_url, prefix=prefix)

    def cpu_roots(self) -> dict[str, list[int]]:
        rabbit = listening_pid(self.rabbitmq_port)
        return {**super().cpu_roots(), "rabbitmq": [rabbit] if rabbit else []}


@dataclass
class Report:
    name: str
    singles: list[Step] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    good: int = 0
    bad: int | None = None  # the smallest count that failed

    def single_latencies(self) -> list[float]:
        return [ms for step in self.singles for ms in step.load.stats.latencies]

    def single_cpu_per_message(self) -> float:
        messages = sum(s.load.stats.messages for s in self.singles)
        return sum(s.cpu_total_ms for s in self.singles) / messages if messages else float("nan")


def run(stacks: list[BrokerStack], drawings: list[Drawing], args: argparse.Namespace) -> dict[str, Report]:
    reports = {s.name: Report(s.name) for s in stacks}

    def step(system: BrokerStack, clients: int, seconds: float, *, judged: bool) -> Step:
        result = measure(system, drawings, clients, seconds, args)
        print(step_row(result, args.p95_ms if judged else None), flush=True)
        return result

    def turn(i: int) -> list[BrokerStack]:  # the order turns every step (two stacks: it flips)
        return stacks[i % len(stacks) :] + stacks[: i % len(stacks)]

    print(HEADER, flush=True)
    for i in range(args.single_rounds):
        for system in turn(i):
            reports[system.name].singles.append(step(system, 1, args.single_s, judged=False))
    for i, clients in enumerate(n for n in args.ladder if n <= args.max_clients):
        for system in turn(i):
            report = reports[system.name]
            if report.bad is not None:
                continue
            result = step(system, clients, args.step_s, judged=True)
            report.steps.append(result)
            if result.passes(args.p95_ms):
                report.good = clients
            else:
                report.bad = clients
        if all(r.bad is not None for r in reports.values()):
            break
    for i in range(args.bisections):
        for system in turn(i):
            report = reports[system.name]
            if report.bad is None or (mid := (report.good + report.bad) // 2) <= report.good:
                continue
            result = step(system, mid, args.step_s, judged=True)
            report.steps.append(result)
            if result.passes(args.p95_ms):
                report.good = mid
            else:
                report.bad = mid
    return reports


def summary(reports: dict[str, Report], args: argparse.Namespace) -> list[str]:
    lines = ["", "== summary"]
    for r in reports.values():
        lat = r.single_latencies()
        lines.append(
            f"{r.name:<9} 1 client ({len(r.singles)} x {args.single_s:g} s, {len(lat)} drawings): "
            f"p50 {pct(lat, 50):.1f} ms, p95 {pct(lat, 95):.1f} ms, {r.single_cpu_per_message():.2f} CPU-ms per message"
        )
    for r in reports.values():  # the workers' timings: queue_* is publish + broker + pick-up of the hop
        phases: dict[str, list[float]] = {}
        for step in r.singles:
            for phase, values in step.load.stats.phases.items():
                phases.setdefault(phase, []).extend(values)
        lines.append(
            f"{r.name:<9} 1 client, the workers' timings, median ms: "
            + "  ".join(f"{k}={pct(v, 50):.2f}" for k, v in sorted(phases.items()))
        )
    for r in reports.values():
        cap = f"{r.good}" if r.bad is not None else f">= {r.good}"
        lines.append(
            f"{r.name:<9} capacity: {cap} clients (p95 <= {args.p95_ms:g} ms, no error, nothing lost; "
            f"{args.step_s:g} s steps; first failure at {r.bad})"
        )
    by = {name: {s.clients: s for s in r.steps} for name, r in reports.items()}
    names = list(reports)
    for n in sorted(set.intersection(*(set(steps) for steps in by.values()))):
        lines.append(
            f"at {n} clients: p95 "
            + ", ".join(f"{name} {by[name][n].load.latency(95):.1f} ms" for name in names)
            + "; CPU-ms per message "
            + ", ".join(f"{name} {by[name][n].cpu_per_message:.2f}" for name in names)
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--brokers", default="redis,rabbitmq", help="which stacks, in the first step's order")
    add_load_arguments(parser, step_s=10.0, ladder=DEFAULT_LADDER, bisections=2)
    parser.add_argument("--single-s", type=float, default=15.0, help="each 1-client measurement")
    parser.add_argument("--single-rounds", type=int, default=2, help="1-client measurements per broker, alternating")
    parser.add_argument("--web-processes", type=int, help="daphne processes per stack (default: as `make run`)")
    parser.add_argument(
        "--rabbitmq-url",
        default=os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672"),
        help="the RabbitMQ server, without a virtual host (the bench makes its own)",
    )
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, interrupt)  # a killed bench stops what it started, as Ctrl-C does
    print(machine_line(ROOT), flush=True)
    print(
        f"load: clients draw MNIST test digits at one message per {args.pace_ms:g} ms ({args.batch} points), "
        f"drawings back to back; latency = last stroke -> its prediction (client side); both stacks up throughout, "
        f"one loaded at a time, the order turning every step",
        flush=True,
    )
    drawings = make_drawings(Path(args.data_dir), args.drawings, args.seed)
    rabbit_user = urlparse(args.rabbitmq_url).username or "guest"
    reports: dict[str, Report] = {}
    with contextlib.ExitStack() as running:
        try:
            db_url = running.enter_context(throwaway_database())
            vhost_url = running.enter_context(rabbitmq_vhost(args.rabbitmq_url, rabbit_user))
            urls = {"redis": None, "rabbitmq": vhost_url, "redis-celery": None}
            stacks = []
            for name in args.brokers.split(","):
                system = BrokerStack(
                    name,
                    db_url=db_url,
                    redis_url=args.redis_url,
                    broker_url=urls[name],
                    web_processes=args.web_processes,
                    rabbitmq_port=urlparse(args.rabbitmq_url).port or 5672,
                    extra_env={"PUBLISH_VIA": "celery"} if name == "redis-celery" else None,
                )
                running.enter_context(system)
                broker = urls[name] or f"{args.redis_url} (key prefix {system.prefix})"
                broker += f", PUBLISH_VIA={'redis' if name == 'redis' else 'celery'}"
                print(
                    f"{name}: broker {broker}; daphne processes {system.web_processes}, one Celery worker per queue; "
                    f"{system.describe()}",
                    flush=True,
                )
                stacks.append(system)
            for system in stacks:
                warm_up(system, drawings, args)
            reports = run(stacks, drawings, args)
        except KeyboardInterrupt:
            print("\ninterrupted: every process started was stopped", file=sys.stderr)
    print("\n".join(summary(reports, args)))


if __name__ == "__main__":
    main()
