"""The web process's side of the queue: publish batches of jobs, route the answers back.

One `JobClient` per process (per event loop): a `JobBatcher` that publishes one task message per
batch through the process's publisher (digitsite.celery.publisher: by task name, the web side never
imports worker code, torch or the ML core), and a `ReplyHub` that receives this process's answers and
hands each to its connection or request.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from channels.layers import get_channel_layer
from django.conf import settings

from contract.jobs import Answer, FillRequest, HeatMapAnswer, Job
from contract.publish import Publisher
from digitsite.celery import publisher
from recognizer.batching import JobBatcher, OnFailed, Publish
from recognizer.replies import Handler, ReplyHub


def new_job_id() -> str:
    return uuid.uuid4().hex


def publish_fill(pks: list[int]) -> None:
    """Ask a worker to predict stored drawings (blocking; called after their commit)."""
    publisher().publish(FillRequest(tuple(pks)))


def batch_publish(through: Publisher) -> Publish:
    """How the batcher publishes: on the event loop (Redis), or in its publish thread (Celery's send_task)."""
    return through.publish if through.blocking else through.publish_async


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

    async def run(self, job: Job) -> Answer:
        """Submit one job and wait for its answer (re-raises a failed publish); the caller bounds the wait
        (asyncio.timeout)."""
        done: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()

        async def answered(answer: Answer, _sent_at: float) -> None:
            if not isinstance(answer, HeatMapAnswer) and not done.done():
                done.set_result(answer)

        async def failed(exc: BaseException) -> None:
            if not done.done():
                done.set_exception(exc)

        self.register(job.client, answered)
        try:
            self.submit(job, failed)
            return await done
        finally:
            self.unregister(job.client)


_clients: dict[asyncio.AbstractEventLoop, JobClient] = {}
_starting: dict[asyncio.AbstractEventLoop, asyncio.Future[JobClient]] = {}


async def job_client(publish: Publish | None = None, make_hub: Callable[[], ReplyHub] | None = None) -> JobClient:
    """This process's (this event loop's) JobClient, started on first use (`publish`: how its
    batches leave; the process's publisher unless a test gives one)."""
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
            publish or batch_publish(publisher()),
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
