"""What every reliability scenario checks on the running stack: its processes' memory (RSS from /proc), that
none crashed or restarted, what it keeps in Redis under its prefix, and the verdict line."""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

from bench.procstat import redis_pid
from scripts.stack import Stack

MEMORY_GROWTH_MAX = 0.10  # the "flat memory": at most 10% above the reference sample


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError, IndexError):
                raw = Path(f"/proc/{entry.name}/stat").read_text()
                tree.setdefault(int(raw[raw.rindex(")") + 2 :].split()[1]), []).append(int(entry.name))
    return tree


def tree_rss_kb(pid: int, tree: dict[int, list[int]]) -> int:
    """RSS of a process and its descendants (none today: daphne and solo workers are one process)."""
    return _rss_kb(pid) + sum(tree_rss_kb(child, tree) for child in tree.get(pid, []))


def stack_pids(stack: Stack) -> dict[str, int]:
    return {name: proc.pid for name, proc in stack.procs}


def rss_sample(stack: Stack) -> dict[str, int]:
    """kB per process of the service: each of `stack.procs` (with its descendants), and Redis."""
    tree = _children()
    sample = {name: tree_rss_kb(proc.pid, tree) for name, proc in stack.procs}
    if (pid := redis_pid(stack.redis_url)) is not None:
        sample["redis"] = _rss_kb(pid)
    return sample


def growth(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    return {name: (after.get(name, 0) - kb) / kb for name, kb in before.items() if kb}


def rss_lines(before: dict[str, int], after: dict[str, int], labels: tuple[str, str]) -> list[str]:
    g = growth(before, after)
    return [
        f"  {name:<20} {before[name] / 1024:8.1f} MB {labels[0]}  {after.get(name, 0) / 1024:8.1f} MB {labels[1]}  "
        f"{g.get(name, math.nan):+7.1%}"
        for name in before
    ]


def crash_failures(stack: Stack, pids: dict[str, int]) -> list[str]:
    """Processes that died, were replaced or restarted since `pids` was taken."""
    failures = []
    now = stack_pids(stack)
    for name, pid in pids.items():
        proc = dict(stack.procs).get(name)
        if now.get(name) != pid or proc is None or proc.poll() is not None:
            failures.append(f"{name} (pid {pid}) died or was replaced")
        elif stack.restarts(name):
            failures.append(f"{name} restarted {stack.restarts(name)} time(s)")
    return failures


# ---- Redis under the stack's prefix


@dataclass(frozen=True)
class RedisState:
    used_memory: int  # the whole server's (shared with anything else using it)
    keys: frozenset[str]  # keys under the stack's prefix (without it)
    kept: frozenset[str]  # of those, the keys without an expiry (a lock or a heartbeat expires by itself)
    channels: int  # pub/sub channels with subscribers under the stack's prefix


def redis_state(stack: Stack) -> RedisState:
    import redis

    client = redis.Redis.from_url(stack.redis_url, socket_timeout=5)
    prefix = stack.env.get("REDIS_PREFIX", "")
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.ttl(key)
    names = [k.decode()[len(prefix) :] for k in keys]
    return RedisState(
        used_memory=int(client.info("memory")["used_memory"]),
        keys=frozenset(names),
        kept=frozenset(n for n, ttl in zip(names, pipe.execute()) if ttl == -1),
        channels=len(client.pubsub_channels(f"{prefix}*")),
    )


def verdict(failures: list[str], target: str) -> str:
    return f"verdict: {'PASS' if not failures else 'FAIL'} (target: {target})" + (
        "" if not failures else " -- " + "; ".join(failures)
    )
