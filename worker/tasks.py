"""Celery tasks: thin wrappers that decode a batch, run one pipeline step and send the answers.

`preprocess` (queue "preprocess") decodes uploaded images and publishes them on to `predict`;
`predict` (queue "inference") renders drawings and runs one forward pass for the whole batch;
`heat_map` (queue "preprocess") computes the heat maps of predictions the web processes showed, in
one backward pass; `fill_drawings` (queue "preprocess": it writes to the database, which may hang)
predicts stored drawings. Each batch's answers go back with one message per web process
(worker.replies); task messages leave through the process's one publisher (digitsite.celery).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from celery import shared_task
from celery.signals import task_postrun, task_prerun, worker_ready, worker_shutdown
from django.conf import settings

from contract.heartbeats import heartbeat_key
from contract.jobs import Batch, ErrorAnswer, FillRequest, JobError
from contract.tasks import FILL_TASK, HEAT_MAP_TASK, PREDICT_QUEUE, PREDICT_TASK, PREPROCESS_TASK, TASK_QUEUES
from digitsite.celery import publisher
from edge.watchdog import Watchdog
from worker import pipeline
from worker.heartbeat import BusyClock, Heartbeat
from worker.model_registry import ModelWatcher, get_predictor, served_model_name, warm_up
from worker.replies import send_answers

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
                error = JobError("internal", "the recogniser failed")
                send_answers(batch.jobs, [ErrorAnswer(j.id, j.client, error=error) for j in batch.jobs], batch=batch.id)

        return task

    return wrap


@batch_task(PREPROCESS_TASK)
def preprocess(batch: Batch) -> None:
    limits = pipeline.UploadLimits(settings.UPLOAD_MAX_BYTES, settings.UPLOAD_MAX_PIXELS)
    ready, failed = pipeline.preprocess_uploads(batch.jobs, limits)
    send_answers(batch.jobs, failed)
    if ready:
        publisher().publish(Batch(batch.id, list(ready)))


@batch_task(PREDICT_TASK)
def predict(batch: Batch) -> None:
    model = get_predictor()
    jobs = batch.jobs
    send_answers(jobs, pipeline.predict_jobs(model, jobs, model_name=model.name), batch=batch.id)


@batch_task(HEAT_MAP_TASK)
def heat_map(batch: Batch) -> None:
    """Heat maps for predictions already shown, in one backward pass (a backward pass costs three
    forward ones: on the other queue, off the live path)."""
    send_answers(batch.jobs, pipeline.heat_map_answers(get_predictor(), batch.jobs))


@shared_task(name=FILL_TASK, ignore_result=True)
def fill_drawings(pks: list[int]) -> None:
    """Stored drawings -> their predictions, PNGs and 28x28 images (see worker.drawings)."""
    from worker.drawings import drawings_fill  # the ORM only where it is used: after Django is set up

    drawings_fill(get_predictor(), list(FillRequest.from_wire(pks).pks))


def publish_fill(pks: list[int]) -> None:
    """Queue the fill of stored drawings `pks` (the sweep's)."""
    publisher().publish(FillRequest(tuple(pks)))


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
    global _heartbeat, _watcher, _sweeper
    queues = sorted(q.name for q in getattr(getattr(sender, "task_consumer", None), "queues", []))
    # Every worker loads the model before its first job: the preprocess queue's heat maps and stored
    # drawings need it too, and loading it there (about 1 s) must not delay the first of them.
    predictor = get_predictor()  # loaded already, and warm, in a woken spare (scripts/spares.py)
    if PREDICT_QUEUE in queues:
        warm_up(predictor)
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
        import redis

        from worker.drawings import Sweeper

        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
        _sweeper = Sweeper(client, f"{settings.REDIS_PREFIX}digits:sweep-lock", publish_fill)
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
