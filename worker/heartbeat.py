"""Workers say they are alive by writing to Redis, so that /healthz reads state instead of asking.

Each worker process stamps `<worker>@<queue>` in one sorted set (score: wall-clock time) every
HEARTBEAT_S from a daemon thread, and removes itself when it shuts down. /healthz counts the
stamps younger than HEARTBEAT_TTL_S: one Redis round trip, no broadcast, no waiting for replies.
A worker that has loaded a model also stamps `<worker>=<model>` in a second sorted set, so that
/healthz says which model each live worker serves (during a switch, both for a moment), and writes
its resident memory into a hash beside them, for /metrics (recognizer.metrics).
"""

from __future__ import annotations

import logging
import os
import resource
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast

import redis

log = logging.getLogger(__name__)

HEARTBEAT_S = 1.0
HEARTBEAT_TTL_S = 3.5  # a worker missing three beats is taken for dead


def heartbeat_key(prefix: str) -> str:
    return f"{prefix}digits:heartbeats"


def serving_key(heartbeat: str) -> str:
    """The sorted set of `<worker>=<model>` stamps beside a heartbeat key."""
    return f"{heartbeat}:models"


def rss_key(heartbeat: str) -> str:
    """The hash of `<worker>` -> resident memory in bytes beside a heartbeat key."""
    return f"{heartbeat}:rss"


def busy_key(heartbeat: str) -> str:
    """The hash of `<worker>` -> seconds spent in tasks since it started, beside a heartbeat key."""
    return f"{heartbeat}:busy"


class BusyClock:
    """Seconds a worker has spent running tasks (its utilisation is the rate of this): `begin` and
    `end` around each task, `seconds` from any thread (a task under way counts so far)."""

    def __init__(self) -> None:
        self._done = 0.0
        self._since: float | None = None

    def begin(self) -> None:
        self._since = time.monotonic()

    def end(self) -> None:
        since, self._since = self._since, None
        if since is not None:
            self._done += time.monotonic() - since

    def seconds(self) -> float:
        since = self._since
        return self._done + (time.monotonic() - since if since is not None else 0.0)


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """This process's resident memory now (Linux: /proc/self/statm), else its peak."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def beat(
    client: redis.Redis,
    key: str,
    members: Iterable[str],
    now: float | None = None,
    *,
    worker: str | None = None,
    model: str | None = None,
    was: str | None = None,
    rss: int | None = None,
    busy_s: float | None = None,
) -> None:
    """Stamp `members` alive; with `model`, stamp `worker` as serving it (and drop `was`, the model
    it served before, at once rather than when its stamp grows old); with `rss` and `busy_s`, its
    memory and the seconds it has spent in tasks."""
    now = time.time() if now is None else now
    pipe = client.pipeline(transaction=False)
    pipe.zadd(key, {m: now for m in members})
    pipe.zremrangebyscore(key, "-inf", now - 10 * HEARTBEAT_TTL_S)  # the long dead, forgotten
    if worker and rss:
        pipe.hset(rss_key(key), worker, rss)
    if worker and busy_s is not None:
        pipe.hset(busy_key(key), worker, f"{busy_s:.4f}")
    if worker and model:
        models = serving_key(key)
        if was and was != model:
            pipe.zrem(models, f"{worker}={was}")
        pipe.zadd(models, {f"{worker}={model}": now})
        pipe.zremrangebyscore(models, "-inf", now - 10 * HEARTBEAT_TTL_S)
    pipe.execute()


def _per_queue(members: Iterable[bytes | str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for member in members:
        queue = (member.decode() if isinstance(member, bytes) else member).rsplit("@", 1)[-1]
        counts[queue] = counts.get(queue, 0) + 1
    return counts


def live_workers(client: redis.Redis, key: str, now: float | None = None) -> dict[str, int]:
    """Queue -> number of workers that beat within HEARTBEAT_TTL_S."""
    now = time.time() if now is None else now
    members = client.zrangebyscore(key, now - HEARTBEAT_TTL_S, "+inf")  # without scores: the members
    return _per_queue(cast("list[bytes | str]", members))


def worker_report(client: redis.Redis, key: str, now: float | None = None) -> tuple[dict[str, int], dict[str, int]]:
    """(queue -> live workers, model -> live workers serving it), in one round trip."""
    now = time.time() if now is None else now
    pipe = client.pipeline(transaction=False)
    pipe.zrangebyscore(key, now - HEARTBEAT_TTL_S, "+inf")
    pipe.zrangebyscore(serving_key(key), now - HEARTBEAT_TTL_S, "+inf", withscores=True)
    alive, stamps = pipe.execute()
    newest: dict[str, tuple[float, str]] = {}  # a worker's newest stamp wins (a switch leaves two)
    for member, score in stamps:
        worker, _, model = member.decode().rpartition("=")
        if worker not in newest or score > newest[worker][0]:
            newest[worker] = (score, model)
    models: dict[str, int] = {}
    for _, model in newest.values():
        models[model] = models.get(model, 0) + 1
    return _per_queue(alive), models


@dataclass(frozen=True)
class WorkerDetail:
    name: str
    queues: tuple[str, ...]
    model: str | None
    rss_bytes: int | None
    busy_s: float | None = None  # seconds spent in tasks since it started


def worker_details(client: redis.Redis, key: str, now: float | None = None) -> list[WorkerDetail]:
    """Each live worker: its queues, the model it serves, its resident memory (one round trip)."""
    now = time.time() if now is None else now
    pipe = client.pipeline(transaction=False)
    pipe.zrangebyscore(key, now - HEARTBEAT_TTL_S, "+inf")
    pipe.zrangebyscore(serving_key(key), now - HEARTBEAT_TTL_S, "+inf", withscores=True)
    pipe.hgetall(rss_key(key))
    pipe.hgetall(busy_key(key))
    alive, stamps, rss, busy = pipe.execute()
    queues: dict[str, list[str]] = {}
    for member in alive:
        worker, _, queue = member.decode().rpartition("@")
        queues.setdefault(worker, []).append(queue)
    newest: dict[str, tuple[float, str]] = {}
    for member, score in stamps:
        worker, _, model = member.decode().rpartition("=")
        if worker not in newest or score > newest[worker][0]:
            newest[worker] = (score, model)
    memory = {k.decode(): int(v) for k, v in rss.items()}
    busy_s = {k.decode(): float(v) for k, v in busy.items()}
    return [
        WorkerDetail(w, tuple(sorted(q)), newest[w][1] if w in newest else None, memory.get(w), busy_s.get(w))
        for w, q in sorted(queues.items())
    ]


class Heartbeat:
    """The beating thread of one worker process; `serving` says which model it serves (None: none yet)."""

    def __init__(
        self,
        url: str,
        key: str,
        worker: str,
        queues: Iterable[str],
        serving: Callable[[], str | None] = lambda: None,
        busy: BusyClock | None = None,
    ) -> None:
        self._busy = busy
        self._client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._key = key
        self._worker = worker
        self._members = [f"{worker}@{q}" for q in queues]
        self._serving = serving
        self._reported: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            model = self._serving()
            try:
                beat(
                    self._client,
                    self._key,
                    self._members,
                    worker=self._worker,
                    model=model,
                    was=self._reported,
                    rss=rss_bytes(),
                    busy_s=self._busy.seconds() if self._busy is not None else None,
                )
                self._reported = model or self._reported
            except redis.RedisError as exc:  # Redis away: beat again when it is back
                log.debug("heartbeat failed: %s", exc)
            self._stop.wait(HEARTBEAT_S)

    def stop(self) -> None:
        self._stop.set()
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.zrem(self._key, *self._members)
            pipe.hdel(rss_key(self._key), self._worker)
            pipe.hdel(busy_key(self._key), self._worker)
            if self._reported:
                pipe.zrem(serving_key(self._key), f"{self._worker}={self._reported}")
            pipe.execute()
        except redis.RedisError:
            pass
