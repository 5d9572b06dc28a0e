"""What /healthz checks: Redis, the database, workers on both queues, the current model."""
from __future__ import annotations

from typing import Any

import redis
from django.conf import settings
from django.db import connection

from digitsite.celery import app as celery_app
from worker.model_registry import current_model_name

QUEUES = ("preprocess", "inference")


def redis_ok() -> bool:
    try:
        return bool(redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False


def worker_queues(timeout: float = 1.0) -> dict[str, list[str]]:
    """Ask running workers which queues they consume (a broadcast over the broker)."""
    try:
        replies = celery_app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception:
        return {}
    return {worker: [q["name"] for q in queues] for worker, queues in replies.items()}


def health_report() -> dict[str, Any]:
    r_ok, db_ok = redis_ok(), database_ok()
    workers = worker_queues() if r_ok else {}
    per_queue = {q: sum(q in names for names in workers.values()) for q in QUEUES}
    try:
        model = current_model_name()
    except (OSError, ValueError, KeyError):
        model = None
    ok = r_ok and db_ok and all(per_queue.values()) and model is not None
    return {
        "status": "ok" if ok else "down",
        "redis": r_ok,
        "database": db_ok,
        "workers": len(workers),
        "queues": per_queue,
        "model": model,
    }
