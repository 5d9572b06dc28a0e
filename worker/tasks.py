"""Celery tasks: thin wrappers that run a pipeline step and pass the job on or push the answer.

A job is a JSON dict made by the web side: `id`, `reply` (channel name), `sent_at`, `saliency`
("inline": in the answer, "after": in a message of its own, or absent) and either a drawing
(`drawing`, `seq`, `strokes`, `canvas`, `brush`, `png`) or an `upload` (base64). Preprocessing runs
on the `preprocess` queue, inference on `inference`; the answer goes to `reply` over the channel layer.
"""
from __future__ import annotations

import base64
import logging
import time
from typing import Any

from celery import shared_task
from celery.signals import worker_process_init, worker_ready
from django.conf import settings

from digits.images import BadImage
from worker import pipeline
from worker.jobs import JOB_EXPIRES_S, job_repr
from worker.model_registry import current_model_name, get_predictor
from worker.push import push

log = logging.getLogger(__name__)


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


def _waited_ms(job: dict[str, Any]) -> float:
    """Time the job spent in Redis since `sent_at` (wall clock: sender and worker share a host)."""
    return round(max(0.0, time.time() - job.get("sent_at", time.time())) * 1000, 3)


def _answer(job: dict[str, Any], body: dict[str, Any]) -> None:
    push(job["reply"], {"type": "prediction.result", "id": job["id"], "sent_at": time.time(), **body})


@shared_task(name="worker.tasks.preprocess", ignore_result=True)
def preprocess(job: dict[str, Any]) -> None:
    start, waited = time.perf_counter(), _waited_ms(job)
    try:
        if "upload" in job:
            image = pipeline.prepare_upload(
                base64.b64decode(job.pop("upload")),
                max_bytes=settings.UPLOAD_MAX_BYTES,
                max_pixels=settings.UPLOAD_MAX_PIXELS,
            )
        else:
            image = pipeline.prepare_strokes(job["strokes"], job["canvas"], job["brush"])
            if job.get("png"):
                job["png"] = pipeline.render_png(job["strokes"], job["canvas"], job["brush"])
            del job["strokes"]
    except BadImage as exc:
        _answer(job, {"error": {"code": exc.code, "message": str(exc)}})
        return
    except Exception:  # a bug must not take the worker down: answer, log, go on
        log.exception("preprocess failed for job %s", job.get("id"))
        _answer(job, {"error": {"code": "internal", "message": "preprocessing failed"}})
        return
    timings = {"queue_preprocess": waited, "preprocess": _ms(start)}
    if image is None:
        _answer(job, {**pipeline.empty_prediction(current_model_name()), "image": None,
                      "png": job.get("png"), "timings": timings})
        return
    job["image"] = base64.b64encode(image).decode()
    job["timings"] = timings
    job["sent_at"] = time.time()
    infer.apply_async((job,), expires=JOB_EXPIRES_S, argsrepr=job_repr(job))


@shared_task(name="worker.tasks.infer", ignore_result=True)
def infer(job: dict[str, Any]) -> None:
    start, waited = time.perf_counter(), _waited_ms(job)
    try:
        predictor, image = get_predictor(), base64.b64decode(job["image"])
        result = pipeline.classify(predictor, image)
        if job.get("saliency") == "inline":
            result["saliency"] = pipeline.saliency_map(predictor, image, result["digit"])
    except Exception:
        log.exception("inference failed for job %s", job.get("id"))
        _answer(job, {"error": {"code": "internal", "message": "inference failed"}})
        return
    timings = {**job["timings"], "queue_inference": waited, "inference": _ms(start)}
    _answer(job, {**result, "image": job["image"], "png": job.get("png"), "timings": timings})
    if job.get("saliency") == "after":  # the heat map costs a backward pass: send it second
        try:
            heat = pipeline.saliency_map(predictor, image, result["digit"])
        except Exception:
            log.exception("saliency failed for job %s", job.get("id"))
            return
        push(job["reply"], {"type": "prediction.saliency", "drawing": job["drawing"], "seq": job["seq"],
                            "saliency": heat})


@worker_process_init.connect
def _load_model_in_child(**_: Any) -> None:
    get_predictor()


@worker_ready.connect
def _load_model_in_solo_worker(sender: Any = None, **_: Any) -> None:
    """With the solo pool tasks run in this process: load the model before the first job."""
    queues = {q.name for q in getattr(getattr(sender, "task_consumer", None), "queues", [])}
    if "inference" in queues:
        get_predictor()
