"""Handing work to the Celery workers from async code, and waiting for answers on the layer."""
from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from channels.layers import get_channel_layer

from worker.jobs import JOB_EXPIRES_S, job_repr

# Publishing to Redis is blocking I/O: keep it off the event loop, on a few reusable threads.
_publisher = ThreadPoolExecutor(max_workers=4, thread_name_prefix="celery-publish")


def new_job_id() -> str:
    return uuid.uuid4().hex


async def enqueue(job: dict[str, Any]) -> None:
    """Queue `job` for preprocessing; its answer will arrive on channel `job["reply"]`."""
    from worker.tasks import preprocess

    loop = asyncio.get_running_loop()
    job["sent_at"] = time.time()
    await loop.run_in_executor(_publisher, lambda: preprocess.apply_async((job,), expires=JOB_EXPIRES_S, argsrepr=job_repr(job)))


async def run_job(job: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    """Queue a job with a fresh reply channel and wait for its answer (raises TimeoutError)."""
    layer = get_channel_layer()
    job["reply"] = await layer.new_channel()  # subscribed before the job is queued: no reply is missed
    await enqueue(job)
    return await asyncio.wait_for(layer.receive(job["reply"]), timeout)
