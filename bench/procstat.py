"""What a benchmark's processes cost, read from /proc: CPU time of process trees and of the whole machine, who
listens on a port, the Redis server's process; and the line that says which machine and code a run measured."""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


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
