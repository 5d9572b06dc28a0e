"""Celery tasks: thin wrappers that decode a batch, run one pipeline step and push the answers.

`prepare` (queue "preprocess") decodes uploaded images and passes the batch on; `predict` (queue
"inference") renders drawings and runs one forward pass for the whole batch; `heat` (queue
"preprocess") computes the heat maps of predictions the web processes showed, in one backward pass;
`fill_drawings` (queue "preprocess": it writes to the database, which may hang) predicts stored drawings.
Each batch's answers go back with one publish per web process (see contract.jobs).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from celery import shared_task
from celery.signals import task_postrun, task_prerun, worker_process_init, worker_ready, worker_shutdown
from django.conf import settings

from contract.jobs import (
    FILL_TASK,
    HEAT_TASK,
    JOB_EXPIRES_S,
    PREDICT_QUEUE,
    PREDICT_TASK,
    PREPARE_TASK,
    TASK_QUEUES,
    Answer,
    Batch,
    JobError,
)
from edge.watchdog import Watchdog
from worker import pipeline
from worker.enqueue import enqueue
from worker.heartbeat import BusyClock, Heartbeat, heartbeat_key
from worker.model_registry import ModelWatcher, get_predictor, served_model_name, warm_up
from worker.push import push_answers

log = logging.getLogger(__name__)


def batch_task(name: str) -> Callable[[Callable[[Batch], None]], Any]:
    """A task over a decoded batch; a fault answers every job with an error instead of silence
    (and never takes the worker down)."""

    def wrap(step: Callable[[Batch], None]) -> Any:
        @shared_task(name=name, ignore_result=True)
        @functools.wraps(step)
        def task(wire: dict[str, Any]) -> None:
            try:
                batch = Batch.from_wire(wire)
            except Exception:
                log.exception("%s: undecodable batch dropped", name)
                return
            try:
                step(batch)
            except Exception:
                log.exception("%s failed for a batch of %d", name, len(batch.jobs))
                push_answers(
                    batch.jobs,
                    [Answer(j.id, j.client, error=JobError("internal", "the recogniser failed")) for j in batch.jobs],
                    batch=batch.id,
                )

        return task

    return wrap


@batch_task(PREPARE_TASK)
def prepare(batch: Batch) -> None:
    limits = pipeline.UploadLimits(settings.UPLOAD_MAX_BYTES, settings.UPLOAD_MAX_PIXELS)
    ready, failed = pipeline.prepare_uploads(batch.jobs, limits)
    push_answers(batch.jobs, failed)
    if ready:
        wire = Batch(batch.id, ready).to_wire()
        enqueue(predict, PREDICT_QUEUE, wire, JOB_EXPIRES_S)


@batch_task(PREDICT_TASK)
def predict(batch: Batch) -> None:
    model = get_predictor()
    jobs = batch.jobs
    push_answers(jobs, pipeline.predict_jobs(model, jobs, model_name=model.name), batch=batch.id)


@batch_task(HEAT_TASK)
def heat(batch: Batch) -> None:
    """Heat maps for predictions already shown, in one backward pass (a backward pass costs three
    forward ones: on the other queue, off the live path)."""
    push_answers(batch.jobs, pipeline.heat_answers(get_predictor(), batch.jobs))


@worker_process_init.connect
def _load_model_in_child(**_: Any) -> None:
    """A prefork child serves its own copy of the model, so it watches for a switch itself."""
    global _watcher
    get_predictor()
    _watcher = ModelWatcher()
    _watcher.start()


@shared_task(name=FILL_TASK, ignore_result=True)
def fill_drawings(pks: list[int]) -> None:
    """Stored drawings -> their predictions, PNGs and 28x28 images (see worker.drawings)."""
    from worker.drawings import drawings_fill  # the ORM only where it is used: after Django is set up

    drawings_fill(get_predictor(), [int(pk) for pk in pks])


def enqueue_fill(pks: list[int]) -> None:
    fill_drawings.apply_async((pks,), queue=TASK_QUEUES[FILL_TASK])


_heartbeat: Heartbeat | None = None
_sweeper: Any = None
_watcher: ModelWatcher | None = None
_watchdog = Watchdog(settings.WORKER_TASK_TIME_LIMIT_S)  # the solo pool enforces no Celery time limit


_busy = BusyClock()  # seconds in tasks, reported with the heartbeat: the autoscaler's load signal


@task_prerun.connect
def _task_started(task: Any = None, **_: Any) -> None:
    _watchdog.begin(f"task {getattr(task, 'name', '?')}")
    _busy.begin()


@task_postrun.connect
def _task_finished(**_: Any) -> None:
    _busy.end()
    _watchdog.end()


@worker_ready.connect
def _ready(sender: Any = None, **_: Any) -> None:
    """With the solo pool tasks run in this process: load the model before the first job, then
    start beating (so /healthz counts a worker only once it can answer, and says which model it
    serves), and watch for a switch of model (a thread of its own: loading a model or a slow
    database must never delay a beat)."""
    global _heartbeat, _watcher
    queues = sorted(q.name for q in getattr(getattr(sender, "task_consumer", None), "queues", []))
    if PREDICT_QUEUE in queues:
        warm_up(get_predictor())  # loaded already, and warm, in a woken spare (scripts/stack.py)
    _heartbeat = Heartbeat(
        settings.REDIS_URL,
        heartbeat_key(settings.REDIS_PREFIX),
        getattr(sender, "hostname", "worker"),
        queues,
        serving=served_model_name,
        busy=_busy,
    )
    _heartbeat.start()
    _watchdog.start()
    if _watcher is None:
        _watcher = ModelWatcher()
        _watcher.start()
    if TASK_QUEUES[FILL_TASK] in queues:  # the sweep runs where the drawings are filled in
        global _sweeper
        import redis

        from worker.drawings import Sweeper

        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
        _sweeper = Sweeper(client, f"{settings.REDIS_PREFIX}digits:sweep-lock", enqueue_fill)
        _sweeper.start()


@worker_shutdown.connect
def _stopping(**_: Any) -> None:
    _watchdog.stop()
    if _heartbeat is not None:
        _heartbeat.stop()
    if _sweeper is not None:
        _sweeper.stop()
    if _watcher is not None:
        _watcher.stop()
