"""Publishing a batch as a Celery task message with one LPUSH, on the event loop.

Celery's `send_task` costs about 1 ms of CPU per message on this machine and blocks, so it ran in a
thread: a hand-off and the GIL on every batch. Here the message is built directly
(contract.task_messages) and pushed with redis-py's asyncio client. Stored drawings' fill tasks, sent
from the database thread after a commit, still use send_task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, TimeoutError

from contract.jobs import JOB_EXPIRES_S, TASK_QUEUES, Batch, batch_repr
from contract.task_messages import task_message

__all__ = ["TaskPusher", "task_message"]


class TaskPusher:
    """Publishes batches (JobBatcher's `publish`) straight into the Celery queues' Redis lists."""

    def __init__(self, redis_url: str, prefix: str = "", expires_s: Callable[[str], float] | None = None) -> None:
        self._url, self._prefix = redis_url, prefix
        self._expires_s = expires_s or (lambda task: JOB_EXPIRES_S)  # task name -> seconds in the queue at most
        self._clients: dict[asyncio.AbstractEventLoop, aioredis.Redis] = {}

    def _client(self) -> aioredis.Redis:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            # A broker that does not answer fails the publish within a second (the sockets are told
            # `unavailable`) instead of waiting; one retry covers a connection Redis dropped.
            client = self._clients[loop] = aioredis.Redis.from_url(
                self._url,
                socket_timeout=1,
                socket_connect_timeout=1,
                retry=Retry(NoBackoff(), 1),
                retry_on_error=[ConnectionError, TimeoutError],
            )
        return client

    async def __call__(self, task: str, batch: Batch) -> None:
        wire = batch.to_wire()
        queue = TASK_QUEUES[task]
        message = task_message(task, queue, (wire,), argsrepr=batch_repr(wire), expires_s=self._expires_s(task))
        await self._client().lpush(f"{self._prefix}{queue}", message)
