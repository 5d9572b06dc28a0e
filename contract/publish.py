"""Publishing: putting a task message on its queue. The one way the web processes (live batches,
stored drawings' fills) and the workers (their own next hop, the sweep's fills) do it.

Two transports behind one `Publisher`:
- Redis (the default, PUBLISH_VIA=redis): the Celery message is built directly
  (contract.task_messages) and pushed with one LPUSH, from the event loop (`publish_async`, redis-py's
  asyncio client) or from synchronous code (`publish`). Celery's `send_task` costs about 1 ms of CPU
  a message on this machine, and its `apply_async` cost ~7% of an inference worker's time for one hop.
- Celery's `send_task` (PUBLISH_VIA=celery): any broker Celery supports (RabbitMQ), blocking.

"Publish" here always means this; answers go back to the web processes through the channel layer
("send", worker.replies).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, TimeoutError

from contract.jobs import TaskPayload
from contract.task_messages import task_message
from contract.tasks import FILL_TASK, HEAT_MAP_TASK, JOB_EXPIRES_S, TASK_QUEUES

# A broker that does not answer fails the publish quickly (the caller is told), instead of kombu's
# default of retrying for seconds while the socket waits.
PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.1}
# With publisher confirms (a RabbitMQ broker), how long a publish waits for the broker's ack: a broker
# that holds its publishers back (flow control, a memory or disk alarm) fails a live batch within a
# second, as the Redis push does, instead of holding the publish thread. A stored drawing's fill
# (persistent: confirmed once on the broker's disk) may wait longer; the sweep covers it.
PUBLISH_CONFIRM_TIMEOUT_S = 1.0
FILL_CONFIRM_TIMEOUT_S = 5.0

SendTask = Callable[..., Any]  # Celery's app.send_task


class RedisTransport:
    """LPUSH into the Celery queues' Redis lists: one synchronous client per process (a forked child
    makes its own), one asyncio client per event loop."""

    def __init__(self, url: str, prefix: str = "") -> None:
        self.url, self.prefix = url, prefix
        self._lock = threading.Lock()
        self._sync: tuple[int, redis.Redis] | None = None
        self._async: dict[asyncio.AbstractEventLoop, aioredis.Redis] = {}

    def _sync_client(self) -> redis.Redis:
        with self._lock:
            if self._sync is None or self._sync[0] != os.getpid():
                self._sync = (os.getpid(), redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5))
            return self._sync[1]

    def _async_client(self) -> aioredis.Redis:
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            # A broker that does not answer fails the publish within a second (the sockets are told
            # `unavailable`) instead of waiting; one retry covers a connection Redis dropped.
            client = self._async[loop] = aioredis.Redis.from_url(
                self.url,
                socket_timeout=1,
                socket_connect_timeout=1,
                retry=Retry(NoBackoff(), 1),
                retry_on_error=[ConnectionError, TimeoutError],
            )
        return client

    def push(self, queue: str, message: bytes) -> None:
        self._sync_client().lpush(f"{self.prefix}{queue}", message)

    async def push_async(self, queue: str, message: bytes) -> None:
        await self._async_client().lpush(f"{self.prefix}{queue}", message)


class Publisher:
    """Puts task messages (a `Batch` of jobs, a `FillRequest`) on their task's queue, through Redis
    (`redis`) or Celery's `send_task`. `heat_map_expires_s`: heat maps are optional and shed sooner."""

    def __init__(
        self,
        *,
        redis: RedisTransport | None = None,
        send_task: SendTask | None = None,
        heat_map_expires_s: float = JOB_EXPIRES_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if (redis is None) == (send_task is None):
            raise ValueError("a publisher has one transport: redis or send_task")
        self.redis, self._send_task = redis, send_task
        self._heat_map_expires_s, self._clock = heat_map_expires_s, clock

    @property
    def blocking(self) -> bool:
        """Whether publishing blocks (Celery's send_task): the event loop then hands it to a thread."""
        return self.redis is None

    def expires_s(self, task: str) -> float | None:
        """How long a message of `task` may wait in its queue (a stored drawing's fill: for good)."""
        if task == FILL_TASK:
            return None
        return self._heat_map_expires_s if task == HEAT_MAP_TASK else JOB_EXPIRES_S

    def _message(self, payload: TaskPayload) -> tuple[str, bytes]:
        task = payload.task
        queue = TASK_QUEUES[task]
        wire = payload.to_wire(self._clock())
        return queue, task_message(task, queue, (wire,), argsrepr=payload.argsrepr(), expires_s=self.expires_s(task))

    def publish(self, payload: TaskPayload) -> None:
        """Publish from synchronous code (blocks until the broker has it)."""
        if self.redis is not None:
            self.redis.push(*self._message(payload))
            return
        assert self._send_task is not None
        task = payload.task
        self._send_task(
            task,
            args=(payload.to_wire(self._clock()),),
            queue=TASK_QUEUES[task],
            expires=self.expires_s(task),
            argsrepr=payload.argsrepr(),
            retry_policy=PUBLISH_RETRY,
            confirm_timeout=FILL_CONFIRM_TIMEOUT_S if task == FILL_TASK else PUBLISH_CONFIRM_TIMEOUT_S,
        )

    async def publish_async(self, payload: TaskPayload) -> None:
        """Publish from the event loop (Redis only: a blocking publisher runs `publish` in a thread)."""
        if self.redis is None:
            raise RuntimeError("a blocking publisher (Celery's send_task) publishes from a thread: use publish()")
        await self.redis.push_async(*self._message(payload))
