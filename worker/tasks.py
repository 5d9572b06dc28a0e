"""Celery tasks: thin wrappers that decode a batch, run one pipeline step and push the answers.

`prepare` (queue "preprocess") decodes uploaded images and passes the batch on; `predict` (queue
"inference") renders drawings and runs one forward pass for the whole batch. Each batch's answers
go back with one publish per web process (see worker.jobs); heat maps follow in a second one.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from celery import shared_task
from celery.signals import worker_process_init, worker_ready, worker_shutdown
from django.conf import settings

from worker import pipeline
from worker.jobs import (
    FILL_TASK, JOB_EXPIRES_S, PREDICT_QUEUE, PREDICT_TASK, PREPARE_TASK, Answer, Job, JobError, batch_from_wire,
    batch_repr, batch_to_wire,
)
from worker.heartbeat import Heartbeat, heartbeat_key
from worker.model_registry import get_predictor
from worker.push import push_answers

log = logging.getLogger(__name__)


def batch_task(name: str) -> Callable[[Callable[[list[Job]], None]], Any]:
    """A task over a decoded batch; a fault answers every job with an error instead of silence
    (and never takes the worker down)."""

    def wrap(step: Callable[[list[Job]], None]) -> Any:
        @shared_task(name=name, ignore_result=True)
        @functools.wraps(step)
        def task(batch: dict[str, Any]) -> None:
            try:
                jobs = batch_from_wire(batch)
            except Exception:
                log.exception("%s: undecodable batch dropped", name)
                return
            try:
                step(jobs)
            except Exception:
                log.exception("%s failed for a batch of %d", name, len(jobs))
                push_answers(jobs, [Answer(j.id, j.client, error=JobError("internal", "the recogniser failed"))
                                    for j in jobs])
        return task

    return wrap


@batch_task(PREPARE_TASK)
def prepare(jobs: list[Job]) -> None:
    limits = pipeline.UploadLimits(settings.UPLOAD_MAX_BYTES, settings.UPLOAD_MAX_PIXELS)
    ready, failed = pipeline.prepare_uploads(jobs, limits)
    push_answers(jobs, failed)
    if ready:
        batch = batch_to_wire(ready)
        predict.apply_async((batch,), queue=PREDICT_QUEUE, expires=JOB_EXPIRES_S, argsrepr=batch_repr(batch))


@batch_task(PREDICT_TASK)
def predict(jobs: list[Job]) -> None:
    model = get_predictor()
    done = pipeline.predict_jobs(model, jobs, model_name=model.name)
    push_answers(jobs, done.answers)
    if done.saliency_later:  # a backward pass per batch, after every prediction went out
        heat = pipeline.saliency_answers(model, done.saliency_later)
        push_answers([job for job, _ in heat], [answer for _, answer in heat])


@worker_process_init.connect
def _load_model_in_child(**_: Any) -> None:
    get_predictor()


@shared_task(name=FILL_TASK, ignore_result=True)
def fill_drawings(pks: list[int]) -> None:
    """Stored drawings -> their predictions, PNGs and 28x28 images (see worker.drawings)."""
    from worker.drawings import drawings_fill  # the ORM only where it is used: after Django is set up

    drawings_fill(get_predictor(), [int(pk) for pk in pks])


def enqueue_fill(pks: list[int]) -> None:
    fill_drawings.apply_async((pks,), queue=PREDICT_QUEUE)


_heartbeat: Heartbeat | None = None
_sweeper: Any = None


@worker_ready.connect
def _ready(sender: Any = None, **_: Any) -> None:
    """With the solo pool tasks run in this process: load the model before the first job, then
    start beating (so /healthz counts a worker only once it can answer)."""
    global _heartbeat
    queues = sorted(q.name for q in getattr(getattr(sender, "task_consumer", None), "queues", []))
    if PREDICT_QUEUE in queues:
        get_predictor()
    _heartbeat = Heartbeat(settings.REDIS_URL, heartbeat_key(settings.REDIS_PREFIX), getattr(sender, "hostname", "worker"), queues)
    _heartbeat.start()
    if PREDICT_QUEUE in queues:
        global _sweeper
        import redis

        from worker.drawings import Sweeper

        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
        _sweeper = Sweeper(client, f"{settings.REDIS_PREFIX}digits:sweep-lock", enqueue_fill)
        _sweeper.start()


@worker_shutdown.connect
def _stopping(**_: Any) -> None:
    if _heartbeat is not None:
        _heartbeat.stop()
    if _sweeper is not None:
        _sweeper.stop()
