"""What bench/compare.py and bench/brokers.py share: a system under load (the Stack-based ones among them), a load
step's measurement and its printed row, the capacity search, and their common command-line options."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bench.load import DEFAULT_MNIST_DIR, Drawing, LoadResult, load_run, run_async
from bench.procstat import cpu_sample, cpu_spent, machine_busy_ms, redis_pid

DEFAULT_LADDER = (10, 20, 40, 60, 80, 100, 120, 160, 200, 240)


@dataclass
class Capacity:
    clients: int  # the most clients that passed (0: even the smallest count failed)
    bounded: bool  # False: every count tried passed, the real capacity is higher
    tried: list[tuple[int, bool]] = field(default_factory=list)


def capacity_search(passes: Callable[[int], bool], *, ladder: Sequence[int] = DEFAULT_LADDER, bisections: int = 2) -> Capacity:
    """Climb `ladder` until a client count fails, then bisect between the last pass and that
    failure `bisections` times (each halving costs one more step)."""
    tried: list[tuple[int, bool]] = []

    def attempt(n: int) -> bool:
        ok = passes(n)
        tried.append((n, ok))
        return ok

    good, bad = 0, None
    for n in ladder:
        if not attempt(n):
            bad = n
            break
        good = n
    if bad is None:
        return Capacity(good, False, tried)
    for _ in range(bisections):
        mid = (good + bad) // 2
        if mid <= good:
            break
        if attempt(mid):
            good = mid
        else:
            bad = mid
    return Capacity(good, True, tried)


# ---- the systems


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class System(Protocol):
    name: str
    url: str

    def start(self) -> Any: ...
    def stop(self) -> None: ...
    def cpu_roots(self) -> dict[str, list[int]]: ...
    def describe(self) -> str: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: object) -> None: ...


class StackSystem:
    """A running service (scripts.stack.Stack, or another checkout's) as a measured system, with a Redis key prefix
    of its own: started and stopped with Ctrl-C held off, its keys removed afterwards (the machine's Redis left as
    it was found), and `resources` (e.g. its throwaway database) closed with it."""

    name: str

    def __init__(self, name: str, stack: Any, *, redis_url: str, prefix: str, resources: contextlib.ExitStack | None = None):
        self.name, self.stack, self.redis_url, self.prefix = name, stack, redis_url, prefix
        self.resources = resources or contextlib.ExitStack()
        self.url: str = stack.url

    def start(self) -> Any:
        with signals_held():  # Stack.start cleans up after itself; do not interrupt it halfway
            try:
                self.stack.start(timeout=120)
            except BaseException:
                self.resources.close()
                raise
        self.url = self.stack.url  # port=0 stacks know their port only now
        return self

    def cpu_roots(self) -> dict[str, list[int]]:
        pid = redis_pid(self.redis_url)
        # one group per process, so a run shows where the CPU goes (web, each worker, Redis)
        return {**{name: [proc.pid] for name, proc in self.stack.procs}, "redis": [pid] if pid else []}

    def describe(self) -> str:
        return f"processes: {', '.join(name for name, _ in self.stack.procs)}; logs {self.stack.log_dir}"

    def stop(self) -> None:
        from scripts.processes import redis_prefix_clear

        with signals_held():
            self.stack.stop()
            self.resources.close()
            redis_prefix_clear(self.redis_url, self.prefix)

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class signals_held:
    """Defer Ctrl-C / SIGTERM while processes are being started or stopped, then deliver it."""

    def __enter__(self) -> None:
        self.pending: list[int] = []
        self.saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in self.saved:
            signal.signal(s, lambda signum, _frame: self.pending.append(signum))

    def __exit__(self, *exc: object) -> None:
        for s, handler in self.saved.items():
            signal.signal(s, handler)
        if self.pending:
            raise KeyboardInterrupt


def interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


# ---- measuring


@dataclass
class Step:
    system: str
    clients: int
    load: LoadResult
    cpu_ms: dict[str, float]  # per process group of the system
    machine_ms: float  # the whole machine's busy CPU over the step: the rest is the client and others

    @property
    def cpu_total_ms(self) -> float:
        return sum(self.cpu_ms.values())

    @property
    def cpu_per_prediction(self) -> float:
        return self.cpu_total_ms / self.load.stats.predictions if self.load.stats.predictions else float("nan")

    @property
    def cpu_per_message(self) -> float:
        return self.cpu_total_ms / self.load.stats.messages if self.load.stats.messages else float("nan")

    @property
    def others_ms(self) -> float:
        """Busy CPU neither the system nor this load generator spent: other work on the machine."""
        return max(0.0, self.machine_ms - self.cpu_total_ms - self.load.client_cpu_ms)

    def passes(self, p95_ms: float) -> bool:
        s = self.load.stats
        return not s.errors and s.lost == 0 and bool(s.latencies) and self.load.latency(95) <= p95_ms


HEADER = (
    f"{'system':<10} {'clients':>7} {'wall s':>6} {'msgs/s':>7} {'preds/s':>7} {'p50':>7} {'p95':>7} "
    f"{'p99':>7} {'errors':>6} {'lost':>4} {'right':>9} {'cpu ms':>7} {'/pred':>6} {'/msg':>6} "
    f"{'client%':>7} {'others%':>7}  groups (cpu ms)"
)


def step_row(step: Step, p95_ms: float | None = None) -> str:
    r, s = step.load, step.load.stats
    verdict = "" if p95_ms is None else ("  pass" if step.passes(p95_ms) else "  FAIL")
    errors = f"{len(s.errors)}" + (f" {sorted(set(s.errors))}" if s.errors else "")
    groups = " ".join(f"{k}={v:.0f}" for k, v in step.cpu_ms.items())
    return (
        f"{step.system:<10} {step.clients:>7} {r.wall_s:>6.1f} {r.messages_per_s:>7.0f} {r.predictions_per_s:>7.0f} "
        f"{r.latency(50):>7.1f} {r.latency(95):>7.1f} {r.latency(99):>7.1f} {errors:>6} {s.lost:>4} "
        f"{s.correct:>4}/{len(s.latencies):<4} {step.cpu_total_ms:>7.0f} {step.cpu_per_prediction:>6.2f} "
        f"{step.cpu_per_message:>6.2f} {100 * r.client_cpu_ms / (r.wall_s * 1000):>6.0f}% "
        f"{100 * step.others_ms / (r.wall_s * 1000):>6.0f}%  {groups}{verdict}"
    )


def measure(system: System, drawings: Sequence[Drawing], clients: int, duration: float, args: argparse.Namespace) -> Step:
    roots = system.cpu_roots()
    before = {group: cpu_sample(pids) for group, pids in roots.items()}
    machine0 = machine_busy_ms()
    load = run_async(
        load_run(
            system.url,
            drawings,
            clients=clients,
            duration=duration,
            pace=args.pace_ms / 1000,
            batch=args.batch,
            timeout=args.timeout,
            seed=args.seed + clients,
        )
    )
    machine = machine_busy_ms() - machine0
    cpu = {group: cpu_spent(before[group], cpu_sample(pids)) for group, pids in roots.items()}
    time.sleep(args.settle_s)  # let a backlog drain before the next step
    return Step(system.name, clients, load, cpu, machine)


def warm_up(system: System, drawings: Sequence[Drawing], args: argparse.Namespace) -> None:
    """Two clients for --warmup-s: caches, allocators, connections."""
    run_async(
        load_run(
            system.url,
            drawings,
            clients=2,
            duration=args.warmup_s,
            pace=args.pace_ms / 1000,
            batch=args.batch,
            timeout=args.timeout,
        )
    )


def add_load_arguments(parser: argparse.ArgumentParser, *, step_s: float, ladder: Sequence[int], bisections: int) -> None:
    """The options of the load, its steps and the capacity criterion."""
    parser.add_argument("--step-s", type=float, default=step_s, help="duration of each client-count step")
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--settle-s", type=float, default=1.0, help="pause after each step")
    parser.add_argument("--p95-ms", type=float, default=50.0, help="capacity criterion: final-prediction p95")
    parser.add_argument("--ladder", type=lambda s: [int(x) for x in s.split(",")], default=list(ladder))
    parser.add_argument("--max-clients", type=int, default=240)
    parser.add_argument("--bisections", type=int, default=bisections, help="halvings after the ladder's first failure")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13"))
    parser.add_argument("--pace-ms", type=float, default=50.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=10.0, help="a final prediction later than this is lost")
    parser.add_argument("--drawings", type=int, default=400, help="MNIST test digits in the pool")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=str(DEFAULT_MNIST_DIR))
