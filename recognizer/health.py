"""What /healthz checks: Redis, the database, live workers on both queues, the current model (and
which model the live workers serve: `serving`, model -> workers; two names for a moment during a switch).

Workers are counted from the heartbeats they keep in Redis (contract.heartbeats): one round trip,
so a health check costs milliseconds and cannot be used to slow the service down.
"""

from __future__ import annotations

from typing import Any

import redis
from django.conf import settings
from django.db import connection

from contract.heartbeats import heartbeat_key, worker_report
from contract.tasks import QUEUES
from recognizer.model_choice import wanted_model_name

_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:  # one pool per process, not a connection per check
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    return _client


def database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False


def health_report() -> dict[str, Any]:
    try:
        per_queue, serving = worker_report(_redis(), heartbeat_key(settings.REDIS_PREFIX))
        r_ok = True
    except redis.RedisError:
        per_queue, serving, r_ok = {}, {}, False
    db_ok = database_ok()
    counts = {q: per_queue.get(q, 0) for q in QUEUES}
    try:
        model = wanted_model_name()
    except (OSError, ValueError, KeyError):
        model = None
    ok = r_ok and db_ok and all(counts.values()) and model is not None
    return {
        "status": "ok" if ok else "down",
        "redis": r_ok,
        "database": db_ok,
        "workers": sum(counts.values()),
        "workers_per_queue": counts,  # live workers on each queue (not its depth: /metrics has that)
        "model": model,
        "workers_per_model": serving,  # live workers serving each model (two during a switch)
    }
