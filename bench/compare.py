"""Does the queue pay for itself? The service against the simplest alternative, same load, one run.

The two systems, started one after the other on this machine (never both at once):
- service: `scripts.stack.Stack` (daphne(s), the Celery workers, Redis);
- inprocess: `bench/inprocess_server.py` under uvicorn, one process per core, predicting in the web
  process with the same code and model.
Both get the same load (bench/load.py: clients drawing MNIST digits at the page's pace, drawings back
to back for a step's duration). For each system it prints the 1-client latency, a row per client
count (predictions/s, p50/p95/p99 of last stroke -> its prediction, errors, lost, CPU-ms per
prediction and per client message summed over the system's processes from /proc), its capacity (the
most clients whose p95 stays <= --p95-ms with no error and nothing lost), and the ratios.

    python bench/compare.py                          # ~15 s steps, about 5-10 minutes in all
    python bench/compare.py --step-s 8 --single-s 10 # quicker, rougher
    python bench/compare.py --soak                   # then 100 clients x 60 s on each system
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.database import throwaway_database  # noqa: E402
from bench.load import Drawing, make_drawings  # noqa: E402
from bench.procstat import machine_line  # noqa: E402
from bench.steps import (  # noqa: E402
    DEFAULT_LADDER,
    HEADER,
    Capacity,
    StackSystem,
    Step,
    System,
    add_load_arguments,
    capacity_search,
    free_port,
    interrupt,
    measure,
    signals_held,
    step_row,
    warm_up,
)

# ---- the two systems


class InProcessServer:
    """bench/inprocess_server.py under uvicorn: `workers` processes on one port, one torch thread each."""

    name = "inprocess"

    def __init__(self, *, workers: int, root: Path = ROOT, port: int = 0, log_path: Path | None = None) -> None:
        self.workers, self.root, self.port = workers, root, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="inprocess-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> InProcessServer:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.inprocess_server:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--no-access-log",
        ]
        with open(self.log_path, "wb") as log:  # a file, not a pipe: nobody has to keep draining it
            # its own session: a Ctrl-C at the terminal reaches us, and we stop it in order
            self.proc = subprocess.Popen(
                cmd, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Every worker has loaded the model (uvicorn logs one startup line per worker) and it answers."""
        deadline = time.monotonic() + timeout
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.log_path.read_text(errors="replace").count("Application startup complete.") >= self.workers:
                try:
                    with urllib.request.urlopen(f"{self.url}/healthz", timeout=3) as resp:
                        if resp.status == 200:
                            return
                except OSError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"in-process server not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def cpu_roots(self) -> dict[str, list[int]]:
        return {"uvicorn": [self.proc.pid] if self.proc else []}

    def describe(self) -> str:
        return f"uvicorn master and {self.workers} worker(s)" if self.workers > 1 else "one uvicorn process"

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        with signals_held():
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the whole group: master and workers
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
            with contextlib.suppress(ProcessLookupError):  # workers left behind by a master that died first, or a slow shutdown
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def __enter__(self) -> InProcessServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def load_stack_module(root: Path) -> ModuleType:
    """scripts/stack.py of `root` (default: this checkout); another checkout runs its own code."""
    if root.resolve() == ROOT:
        import scripts.stack

        return scripts.stack
    spec = importlib.util.spec_from_file_location("bench_service_stack", root / "scripts" / "stack.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while building the class
    spec.loader.exec_module(module)
    return module


class Service(StackSystem):
    """The service as `make run` starts it, on a free port, with a Redis key prefix of its own and a migrated
    database of its own (bench/database.py)."""

    def __init__(self, *, redis_url: str, web_processes: int | None, root: Path = ROOT, log_dir: Path | None = None) -> None:
        stack_module = load_stack_module(root)
        prefix = f"bench-{uuid.uuid4().hex[:8]}:"
        resources = contextlib.ExitStack()
        db_url = resources.enter_context(throwaway_database())
        # all the bench's clients come from 127.0.0.1: the per-address limits off
        env = {"REDIS_PREFIX": prefix, "DATABASE_URL": db_url, **getattr(stack_module, "UNTHROTTLED", {})}
        kwargs: dict[str, Any] = {
            "port": free_port(),
            "redis_url": redis_url,
            "env": env,
            "log_dir": log_dir or Path(tempfile.mkdtemp(prefix="bench-stack-")),
        }
        self.web_processes_supported = "web_processes" in inspect.signature(stack_module.Stack).parameters
        if web_processes is None and hasattr(stack_module, "default_web_processes"):
            web_processes = stack_module.default_web_processes()  # what `make run` starts
        self.web_processes = web_processes if self.web_processes_supported else 1
        if self.web_processes_supported and web_processes is not None:
            kwargs["web_processes"] = web_processes
        super().__init__("service", stack_module.Stack(**kwargs), redis_url=redis_url, prefix=prefix, resources=resources)


# ---- a run


@dataclass
class SystemReport:
    name: str
    single: Step | None = None
    steps: list[Step] = field(default_factory=list)
    capacity: Capacity | None = None
    soak: Step | None = None


def system_run(system: System, drawings: Sequence[Drawing], args: argparse.Namespace) -> SystemReport:
    report = SystemReport(system.name)
    with system:
        print(f"\n== {system.name} at {system.url} ({system.describe()})", flush=True)
        warm_up(system, drawings, args)
        print(HEADER, flush=True)
        if not args.skip_capacity:
            report.single = measure(system, drawings, 1, args.single_s, args)
            print(step_row(report.single), flush=True)

            def passes(clients: int) -> bool:
                step = measure(system, drawings, clients, args.step_s, args)
                report.steps.append(step)
                print(step_row(step, args.p95_ms), flush=True)
                return step.passes(args.p95_ms)

            ladder = [n for n in args.ladder if n <= args.max_clients]
            report.capacity = capacity_search(passes, ladder=ladder, bisections=args.bisections)
            cap = report.capacity
            print(
                f"capacity of {system.name}: {'' if cap.bounded else '>= '}{cap.clients} clients "
                f"(p95 <= {args.p95_ms:g} ms, no error, nothing lost; {args.step_s:g} s steps)",
                flush=True,
            )
        if args.soak:
            report.soak = measure(system, drawings, args.soak_clients, args.soak_s, args)
            print("soak: " + step_row(report.soak, args.p95_ms), flush=True)
    return report


def summary(reports: dict[str, SystemReport], args: argparse.Namespace) -> list[str]:
    lines = ["", "== summary"]
    for r in reports.values():
        if r.single:
            lines.append(
                f"{r.name:<10} 1 client: p50 {r.single.load.latency(50):.1f} ms, "
                f"p95 {r.single.load.latency(95):.1f} ms, "
                f"{r.single.cpu_per_message:.2f} CPU-ms per message"
            )
        if r.capacity:
            lines.append(f"{r.name:<10} capacity: {'' if r.capacity.bounded else '>= '}{r.capacity.clients} clients")
        if r.soak:
            s = r.soak.load.stats
            lines.append(
                f"{r.name:<10} soak {r.soak.clients} clients x {args.soak_s:g} s: "
                f"errors {len(s.errors)}, lost {s.lost}, "
                f"p95 {r.soak.load.latency(95):.1f} ms, p99 {r.soak.load.latency(99):.1f} ms"
            )
    svc, inp = reports.get("service"), reports.get("inprocess")
    if svc and inp and svc.capacity and inp.capacity:
        ratio = inp.capacity.clients / svc.capacity.clients if svc.capacity.clients else float("inf")
        lines.append(f"capacity inprocess / service: {ratio:.2f}")
        for s, i in _common_steps(svc, inp):  # the same offered load on both
            both = "both passed" if s.passes(args.p95_ms) and i.passes(args.p95_ms) else "not both passed"
            lines.append(
                f"CPU-ms at {s.clients} clients ({both}): per prediction service {s.cpu_per_prediction:.2f}, "
                f"inprocess {i.cpu_per_prediction:.2f} "
                f"(service/inprocess {s.cpu_per_prediction / i.cpu_per_prediction:.2f}); "
                f"per client message service {s.cpu_per_message:.2f}, inprocess {i.cpu_per_message:.2f} "
                f"(service/inprocess {s.cpu_per_message / i.cpu_per_message:.2f})"
            )
    return lines


def _common_steps(a: SystemReport, b: SystemReport) -> list[tuple[Step, Step]]:
    """Pairs of steps (the 1-client one included) at the client counts both systems ran."""
    by_a = {s.clients: s for s in ([a.single] if a.single else []) + a.steps}
    by_b = {s.clients: s for s in ([b.single] if b.single else []) + b.steps}
    return [(by_a[n], by_b[n]) for n in sorted(set(by_a) & set(by_b))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_load_arguments(parser, step_s=15.0, ladder=DEFAULT_LADDER, bisections=3)
    parser.add_argument("--systems", default="service,inprocess", help="which to run, in this order")
    parser.add_argument("--single-s", type=float, default=30.0, help="duration of the 1-client measurement")
    parser.add_argument("--skip-capacity", action="store_true", help="only the soak (with --soak)")
    parser.add_argument("--soak", action="store_true", help="also --soak-clients for --soak-s on each system")
    parser.add_argument("--soak-clients", type=int, default=100)
    parser.add_argument("--soak-s", type=float, default=60.0)
    parser.add_argument("--inprocess-workers", type=int, default=os.cpu_count() or 1, help="uvicorn processes")
    parser.add_argument(
        "--web-processes",
        type=int,
        help="daphne processes of the service, when Stack supports it (default: as many as `make run` starts)",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=ROOT,
        help="the checkout whose code both systems run (e.g. a `git worktree` of a commit); default this one",
    )
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, interrupt)  # a killed bench stops what it started, as Ctrl-C does
    print(machine_line(args.root), flush=True)
    print(
        f"load: clients draw MNIST test digits at one message per {args.pace_ms:g} ms ({args.batch} points), "
        f"drawings back to back; latency = last stroke -> its prediction (client side); CPU-ms summed "
        f"over each system's processes (/proc utime+stime); 'client%' is this load generator's own CPU, "
        f"'others%' the machine's busy CPU that neither used (other work on this machine, in % of one core)",
        flush=True,
    )
    drawings = make_drawings(Path(args.data_dir), args.drawings, args.seed)
    systems: dict[str, Callable[[], System]] = {
        "service": lambda: Service(redis_url=args.redis_url, web_processes=args.web_processes, root=args.root.resolve()),
        "inprocess": lambda: InProcessServer(workers=args.inprocess_workers, root=args.root.resolve()),
    }
    reports: dict[str, SystemReport] = {}
    try:
        for name in args.systems.split(","):
            system = systems[name]()
            if isinstance(system, Service):
                wp = f"{system.web_processes}" if system.web_processes_supported else "1 (this Stack has no web_processes)"
                print(
                    f"service: daphne processes {wp}, one Celery worker per queue; "
                    f"Redis {args.redis_url}, key prefix {system.prefix}",
                    flush=True,
                )
            else:
                print(f"inprocess: uvicorn --workers {args.inprocess_workers}, torch threads 1 per process", flush=True)
            reports[name] = system_run(system, drawings, args)
    except KeyboardInterrupt:
        print("\ninterrupted: every process started was stopped", file=sys.stderr)
    print("\n".join(summary(reports, args)))


if __name__ == "__main__":
    main()
