"""Publishing a batch as a Celery task message with one LPUSH, on the event loop.

Celery's `send_task` costs about 1 ms of CPU per message on this machine (the message is built
through several layers, kombu's producer looks up bindings and serializers, and each command gets
a new client) and blocks, so it ran in a thread: a hand-off and the GIL on every batch. The message
itself has one fixed shape: Celery's task protocol 2 inside kombu's Redis envelope. It is built here
directly (msgpack body, base64 as kombu's Redis transport carries it) and pushed with redis-py's
asyncio client; the Celery workers consume it like any other task (the integration tests run it
against real workers, and tests/recognizer/test_publish.py compares it with what Celery writes).
Stored drawings' fill tasks, sent from the database thread after a commit, still use send_task.
"""
from __future__ import annotations

import asyncio
import base64
import datetime
import json
import os
import socket
import uuid
from typing import Any

import msgpack
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, TimeoutError

from worker.jobs import JOB_EXPIRES_S, PREPARE_QUEUE, PREDICT_TASK, PREPARE_TASK, Batch, batch_repr

_ORIGIN = f"gen{os.getpid()}@{socket.gethostname()}"
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def task_message(task: str, queue: str, args: tuple[Any, ...], *, argsrepr: str,
                 expires_s: float | None = None, task_id: str | None = None) -> bytes:
    """A Celery (protocol 2) task message as kombu's Redis transport stores it in the queue's list."""
    task_id = task_id or str(uuid.uuid4())
    expires = None
    if expires_s is not None:
        expires = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=expires_s)).isoformat()
    body = msgpack.packb([list(args), {}, _EMBED], use_bin_type=True)
    envelope = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "binary",
        "content-type": "application/x-msgpack",
        "headers": {
            "lang": "py", "task": task, "id": task_id, "shadow": None, "eta": None, "expires": expires,
            "group": None, "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": task_id,
            "parent_id": None, "argsrepr": argsrepr, "kwargsrepr": "{}", "origin": _ORIGIN,
            "ignore_result": True, "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
        },
        "properties": {
            "correlation_id": task_id, "reply_to": "", "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue}, "priority": 0,
            "body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(envelope).encode()


class TaskPusher:
    """Publishes batches (JobBatcher's `publish`) straight into the Celery queues' Redis lists."""

    def __init__(self, redis_url: str, prefix: str = "") -> None:
        self._url, self._prefix = redis_url, prefix
        self._clients: dict[asyncio.AbstractEventLoop, aioredis.Redis] = {}

    def _client(self) -> aioredis.Redis:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            # A broker that does not answer fails the publish within a second (the sockets are told
            # `unavailable`) instead of waiting; one retry covers a connection Redis dropped.
            client = self._clients[loop] = aioredis.Redis.from_url(
                self._url, socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 1),
                retry_on_error=[ConnectionError, TimeoutError])
        return client

    async def __call__(self, queue: str, batch: Batch) -> None:
        wire = batch.to_wire()
        task = PREPARE_TASK if queue == PREPARE_QUEUE else PREDICT_TASK
        message = task_message(task, queue, (wire,), argsrepr=batch_repr(wire), expires_s=JOB_EXPIRES_S)
        await self._client().lpush(f"{self._prefix}{queue}", message)
