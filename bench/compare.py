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
import datetime
import importlib.util
import inspect
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.database import throwaway_database  # noqa: E402
from bench.load import DEFAULT_MNIST_DIR, Drawing, LoadResult, load_run, make_drawings, run_async  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
DEFAULT_LADDER = (10, 20, 40, 60, 80, 100, 120, 160, 200, 240)


# ---- CPU accounting from /proc


def proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU ms) of a process, or None when it is gone. CPU = utime + stime + cutime +
    cstime: its own time and that of the children it has reaped (a reaped child leaves the tree)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) ": comm may hold spaces
    ticks = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime (stat fields 14-17)
    return int(fields[1]), ticks * 1000 / CLK_TCK


def cpu_sample(roots: Iterable[int]) -> dict[int, float]:
    """CPU ms so far of each live process among `roots` and all their descendants."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (st := proc_stat(int(entry.name))) is not None:
            stats[int(entry.name)] = st
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    sample: dict[int, float] = {}
    todo = [pid for pid in roots if pid in stats]
    while todo:
        pid = todo.pop()
        if pid not in sample:
            sample[pid] = stats[pid][1]
            todo.extend(children.get(pid, []))
    return sample


def cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU ms spent between two samples by the processes alive at the second (new ones in full)."""
    return sum(ms - before.get(pid, 0.0) for pid, ms in after.items())


def machine_busy_ms() -> float:
    """CPU ms all cores of the machine have been busy (user, nice, system, irq, softirq; not steal)."""
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in Path("/proc/stat").read_text().split()[1:8])
    return (user + nice + system + irq + softirq) * 1000 / CLK_TCK


def listening_pid(port: int) -> int | None:
    """The process listening on TCP `port` (IPv4 or IPv6), found through /proc/net/tcp and /proc/*/fd."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{parts[9]}]")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                if os.readlink(fd.path) in inodes:
                    return int(entry.name)
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
    return None


def redis_pid(url: str) -> int | None:
    """The Redis server behind `url`: INFO's process_id when that pid is a redis-server here (not in
    another pid namespace), else whoever listens on its port."""
    from urllib.parse import urlparse

    import redis

    try:
        pid = int(redis.Redis.from_url(url, socket_timeout=2).info("server")["process_id"])
        if "redis" in Path(f"/proc/{pid}/comm").read_text():
            return pid
    except (redis.RedisError, OSError, KeyError, ValueError):
        pass
    return listening_pid(urlparse(url).port or 6379)


# ---- capacity search


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


# ---- the two systems


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
        with _signals_held():
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the whole group: master and workers
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            try:  # workers left behind by a master that died first, or a slow shutdown
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
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


class Service:
    """The service as `make run` starts it, on a free port, with a Redis key prefix of its own."""

    name = "service"

    def __init__(self, *, redis_url: str, web_processes: int | None, root: Path = ROOT, log_dir: Path | None = None) -> None:
        stack_module = load_stack_module(root)
        self.prefix = f"bench-{uuid.uuid4().hex[:8]}:"
        self.redis_url = redis_url
        self._database = contextlib.ExitStack()  # a migrated database of its own (bench/database.py)
        db_url = self._database.enter_context(throwaway_database())
        # all the bench's clients come from 127.0.0.1: the per-address limits off
        env = {"REDIS_PREFIX": self.prefix, "DATABASE_URL": db_url, **getattr(stack_module, "UNTHROTTLED", {})}
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
        self.stack = stack_module.Stack(**kwargs)
        self.url = self.stack.url

    def start(self) -> Service:
        with _signals_held():  # Stack.start cleans up after itself; do not interrupt it halfway
            try:
                self.stack.start(timeout=120)
            except BaseException:
                self._database.close()
                raise
        self.url = self.stack.url  # port=0 stacks know their port only now
        return self

    def cpu_roots(self) -> dict[str, list[int]]:
        pid = redis_pid(self.redis_url)
        # one group per process, so a run shows where the CPU goes (web, each worker, Redis)
        return {**{name: [proc.pid] for name, proc in self.stack.procs}, "redis": [pid] if pid else []}

    def describe(self) -> str:
        names = [name for name, _ in self.stack.procs]
        return f"processes: {', '.join(names)}"

    def stop(self) -> None:
        with _signals_held():
            self.stack.stop()
            self._database.close()
            try:  # leave the machine's Redis as we found it
                import redis

                client = redis.Redis.from_url(self.redis_url, socket_timeout=2)
                for key in client.scan_iter(match=f"{self.prefix}*"):
                    client.delete(key)
            except Exception:  # a bundled Redis is gone already, with its keys
                pass

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _signals_held:
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
        )  # warm up caches, allocators, connections
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


def machine_line(root: Path) -> str:
    model = "unknown CPU"
    try:
        if m := re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M):
            model = m.group(1).strip()
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit, dirty = "", ""
    code = f"commit {commit}{' (dirty tree)' if dirty else ''}" if commit else f"code in {root} (not a git checkout)"
    load1 = os.getloadavg()[0]
    return (
        f"machine: {os.cpu_count()} cores, {model}, {platform.system()} {platform.release()}, "
        f"python {platform.python_version()}, load average {load1:.2f} at start; "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {code}"
    )


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


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default="service,inprocess", help="which to run, in this order")
    parser.add_argument("--step-s", type=float, default=15.0, help="duration of each client-count step")
    parser.add_argument("--single-s", type=float, default=30.0, help="duration of the 1-client measurement")
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--settle-s", type=float, default=1.0, help="pause after each step")
    parser.add_argument("--p95-ms", type=float, default=50.0, help="capacity criterion: final-prediction p95")
    parser.add_argument("--ladder", type=lambda s: [int(x) for x in s.split(",")], default=list(DEFAULT_LADDER))
    parser.add_argument("--max-clients", type=int, default=240)
    parser.add_argument("--bisections", type=int, default=3, help="halvings after the ladder's first failure")
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
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13"))
    parser.add_argument("--pace-ms", type=float, default=50.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=10.0, help="a final prediction later than this is lost")
    parser.add_argument("--drawings", type=int, default=400, help="MNIST test digits in the pool")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=str(DEFAULT_MNIST_DIR))
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, _interrupt)  # a killed bench stops what it started, as Ctrl-C does
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
