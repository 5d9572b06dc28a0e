"""Workers say they are alive by writing to Redis, so that /healthz reads state instead of asking.

Each worker process beats every HEARTBEAT_S from a daemon thread (the keys and their readers are
contract.heartbeats), and removes itself when it shuts down: `<worker>@<queue>` stamps, the model
it serves once it has loaded one, its resident memory and its seconds in tasks (for /metrics).
"""

from __future__ import annotations

import logging
import os
import resource
import time
from collections.abc import Callable, Iterable

import redis

from contract.heartbeats import HEARTBEAT_S, HEARTBEAT_TTL_S, busy_key, rss_key, serving_key
from digitsite.periodic import Periodic

log = logging.getLogger(__name__)


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
    pipe.zadd(key, dict.fromkeys(members, now))
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
        self._thread = Periodic("heartbeat", HEARTBEAT_S, self.beat_once, first_now=True)

    def start(self) -> None:
        self._thread.start()

    def beat_once(self) -> None:
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

    def stop(self) -> None:
        self._thread.stop()
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
