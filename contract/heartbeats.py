"""The workers' heartbeats in Redis: the key names, and the readers the web side and the scripts use.

Each worker process stamps `<worker>@<queue>` in one sorted set (score: wall-clock time) every
HEARTBEAT_S (worker.heartbeat writes them), and removes itself when it shuts down; /healthz counts
the stamps younger than HEARTBEAT_TTL_S: one Redis round trip, no broadcast, no waiting for replies.
A worker that has loaded a model also stamps `<worker>=<model>` in a second sorted set, and writes
its resident memory and its seconds in tasks into hashes beside them. Pure functions over a Redis
client passed in: nothing here imports worker code.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import redis

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


def _per_queue(members: Iterable[bytes | str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for member in members:
        queue = (member.decode() if isinstance(member, bytes) else member).rsplit("@", 1)[-1]
        counts[queue] = counts.get(queue, 0) + 1
    return counts


def _newest_models(stamps: Iterable[tuple[bytes, float]]) -> dict[str, str]:
    """Worker -> the model of its newest stamp (a switch leaves two for a moment)."""
    newest: dict[str, tuple[float, str]] = {}
    for member, score in stamps:
        worker, _, model = member.decode().rpartition("=")
        if worker not in newest or score > newest[worker][0]:
            newest[worker] = (score, model)
    return {worker: model for worker, (_, model) in newest.items()}


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
    models: dict[str, int] = {}
    for model in _newest_models(stamps).values():
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
    models = _newest_models(stamps)
    memory = {k.decode(): int(v) for k, v in rss.items()}
    busy_s = {k.decode(): float(v) for k, v in busy.items()}
    return [WorkerDetail(w, tuple(sorted(q)), models.get(w), memory.get(w), busy_s.get(w)) for w, q in sorted(queues.items())]
