"""Workers say they are alive by writing to Redis, so that /healthz reads state instead of asking.

Each worker process stamps `<worker>@<queue>` in one sorted set (score: wall-clock time) every
HEARTBEAT_S from a daemon thread, and removes itself when it shuts down. /healthz counts the
stamps younger than HEARTBEAT_TTL_S: one Redis round trip, no broadcast, no waiting for replies.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

import redis

log = logging.getLogger(__name__)

HEARTBEAT_S = 1.0
HEARTBEAT_TTL_S = 3.5  # a worker missing three beats is taken for dead


def heartbeat_key(prefix: str) -> str:
    return f"{prefix}digits:heartbeats"


def beat(client: redis.Redis, key: str, members: Iterable[str], now: float | None = None) -> None:
    now = time.time() if now is None else now
    pipe = client.pipeline(transaction=False)
    pipe.zadd(key, {m: now for m in members})
    pipe.zremrangebyscore(key, "-inf", now - 10 * HEARTBEAT_TTL_S)  # the long dead, forgotten
    pipe.execute()


def live_workers(client: redis.Redis, key: str, now: float | None = None) -> dict[str, int]:
    """Queue -> number of workers that beat within HEARTBEAT_TTL_S."""
    now = time.time() if now is None else now
    counts: dict[str, int] = {}
    for member in client.zrangebyscore(key, now - HEARTBEAT_TTL_S, "+inf"):
        queue = member.decode().rsplit("@", 1)[-1]
        counts[queue] = counts.get(queue, 0) + 1
    return counts


class Heartbeat:
    """The beating thread of one worker process."""

    def __init__(self, url: str, key: str, worker: str, queues: Iterable[str]) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._key = key
        self._members = [f"{worker}@{q}" for q in queues]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                beat(self._client, self._key, self._members)
            except redis.RedisError as exc:  # Redis away: beat again when it is back
                log.debug("heartbeat failed: %s", exc)
            self._stop.wait(HEARTBEAT_S)

    def stop(self) -> None:
        self._stop.set()
        try:
            self._client.zrem(self._key, *self._members)
        except redis.RedisError:
            pass
