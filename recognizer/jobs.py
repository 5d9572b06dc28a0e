"""The web process's side of the queue: publish batches of jobs, route the answers back.

One `JobClient` per process (per event loop): a `JobBatcher` that publishes one Celery message per
batch, by task name (the web side never imports worker code, torch or the ML core), and a
`ReplyHub` that receives this process's answers and hands each to its connection or request.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from contract.jobs import (
    FILL_TASK,
    HEAT_TASK,
    JOB_EXPIRES_S,
    TASK_QUEUES,
    Answer,
    Batch,
    Job,
    batch_repr,
)
from recognizer.batching import JobBatcher, OnFailed, Publish
from recognizer.publish import TaskPusher
from recognizer.replies import Handler, ReplyHub

# A broker that does not answer fails the publish quickly (the client is told), instead of kombu's
# default of retrying for seconds while the socket waits.
PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.1}
# With publisher confirms (a RabbitMQ broker, digitsite/settings.py), how long a publish waits for the
# broker's ack: a broker that holds its publishers back (flow control, a memory or disk alarm) fails a
# live batch within a second, as the Redis push does, instead of holding the publish thread. A stored
# drawing's fill (persistent: confirmed once on the broker's disk) may wait longer; the sweep covers it.
PUBLISH_CONFIRM_TIMEOUT_S = 1.0
FILL_CONFIRM_TIMEOUT_S = 5.0


def new_job_id() -> str:
    return uuid.uuid4().hex


def task_expires_s(task: str) -> float:
    """How long a batch of `task` may wait in its queue: heat maps are optional and shed sooner."""
    return settings.HEAT_EXPIRES_S if task == HEAT_TASK else JOB_EXPIRES_S


def celery_publish(task: str, batch: Batch) -> None:
    """Publish one batch as one Celery message (blocking)."""
    from digitsite.celery import app

    wire = batch.to_wire()
    app.send_task(
        task,
        args=(wire,),
        queue=TASK_QUEUES[task],
        expires=task_expires_s(task),
        argsrepr=batch_repr(wire),
        retry_policy=PUBLISH_RETRY,
        confirm_timeout=PUBLISH_CONFIRM_TIMEOUT_S,
    )


def enqueue_fill(pks: list[int]) -> None:
    """Ask a worker to predict stored drawings (blocking; called after their commit)."""
    from digitsite.celery import app

    app.send_task(
        FILL_TASK, args=(pks,), queue=TASK_QUEUES[FILL_TASK], retry_policy=PUBLISH_RETRY, confirm_timeout=FILL_CONFIRM_TIMEOUT_S
    )


class JobClient:
    def __init__(self, hub: ReplyHub, batcher: JobBatcher) -> None:
        self.hub, self.batcher = hub, batcher

    @property
    def reply(self) -> str:
        return self.hub.channel

    def register(self, client: str, handler: Handler) -> None:
        self.hub.register(client, handler)

    def unregister(self, client: str) -> None:
        self.hub.unregister(client)

    def submit(self, job: Job, on_failed: OnFailed) -> None:
        self.batcher.add(job, on_failed)

    async def run(self, job: Job, *, timeout: float) -> Answer:
        """Submit one job and wait for its answer (raises TimeoutError; re-raises a failed publish)."""
        done: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()

        async def answered(answer: Answer, _sent_at: float) -> None:
            if not answer.is_saliency_only and not done.done():
                done.set_result(answer)

        async def failed(exc: BaseException) -> None:
            if not done.done():
                done.set_exception(exc)

        self.register(job.client, answered)
        try:
            self.submit(job, failed)
            return await asyncio.wait_for(done, timeout)
        finally:
            self.unregister(job.client)


_clients: dict[asyncio.AbstractEventLoop, JobClient] = {}
_starting: dict[asyncio.AbstractEventLoop, asyncio.Future[JobClient]] = {}


_pusher: TaskPusher | None = None


def default_publish() -> Publish:
    """PUBLISH_VIA: "redis" pushes batches straight into the Celery queues' lists from the event loop
    (recognizer.publish); "celery" uses Celery's send_task (any broker Celery supports: the default
    when BROKER_URL is not Redis, and the only way there)."""
    global _pusher
    if settings.PUBLISH_VIA == "celery":
        return celery_publish
    if not settings.BROKER_IS_REDIS:
        raise ImproperlyConfigured(
            f"PUBLISH_VIA={settings.PUBLISH_VIA!r} needs a Redis broker, not "
            f"{settings.CELERY_BROKER_URL.partition('://')[0]}://; use PUBLISH_VIA=celery"
        )
    if _pusher is None:
        _pusher = TaskPusher(settings.CELERY_BROKER_URL, settings.REDIS_PREFIX, task_expires_s)
    return _pusher


async def job_client(publish: Publish | None = None, make_hub: Callable[[], ReplyHub] | None = None) -> JobClient:
    """This process's (this event loop's) JobClient, started on first use (`publish`: how its
    batches leave; default_publish() unless a test gives one)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is not None:
        return client
    if loop in _starting:  # another connection is starting it: wait for the same one
        return await _starting[loop]
    starting: asyncio.Future[JobClient] = loop.create_future()
    _starting[loop] = starting
    try:
        hub = make_hub() if make_hub else ReplyHub(get_channel_layer())
        batcher = JobBatcher(
            publish or default_publish(),
            in_flight=settings.BATCHES_IN_FLIGHT,
            lost_after_s=settings.BATCH_LOST_AFTER_S,
            in_thread=settings.PUBLISH_IN_THREAD,
        )
        hub.on_batch_done = batcher.done
        await hub.start()
        client = _clients[loop] = JobClient(hub, batcher)
        starting.set_result(client)
        return client
    except BaseException as exc:
        starting.set_exception(exc)
        starting.exception()  # retrieved: no "never retrieved" warning when nobody else waited
        raise
    finally:
        del _starting[loop]


def drop_job_client(loop: asyncio.AbstractEventLoop) -> JobClient | None:
    """Forget a loop's client (tests that make a new loop per test)."""
    return _clients.pop(loop, None)
