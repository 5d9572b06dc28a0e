"""The workers' own next hop (an upload's prediction after its preprocessing, heat maps after a
prediction), pushed as a Celery task message with one LPUSH on a plain synchronous client.

Celery's `apply_async` cost ~7% of the inference worker's time at 40 clients for the heat-map hop
alone (py-spy, 2026-11-25); the message is the one the web processes push (contract.task_messages).
PUBLISH_VIA=celery (a broker other than Redis) keeps `apply_async`.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import redis
from django.conf import settings

from contract.jobs import batch_repr
from contract.task_messages import task_message

_lock = threading.Lock()
_state: tuple[int, redis.Redis] | None = None  # (pid, client): a forked child makes its own


def _client() -> redis.Redis:
    global _state
    with _lock:
        if _state is None or _state[0] != os.getpid():
            _state = (os.getpid(), redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=5, socket_connect_timeout=5))
        return _state[1]


def enqueue(task: Any, queue: str, wire: dict[str, Any], expires_s: float) -> None:
    """Queue `task` (a Celery task) with the batch `wire` as its one argument on `queue`."""
    if settings.PUBLISH_VIA == "celery":
        task.apply_async((wire,), queue=queue, expires=expires_s, argsrepr=batch_repr(wire))
        return
    message = task_message(task.name, queue, (wire,), argsrepr=batch_repr(wire), expires_s=expires_s)
    _client().lpush(f"{settings.REDIS_PREFIX}{queue}", message)
