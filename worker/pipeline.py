"""Plain functions behind the tasks: jobs -> 28x28 images -> one forward pass -> answers. No Celery.

A batch is prepared job by job (strokes rendered, uploads decoded; a bad job gets an error answer
and never spoils the rest), then every image that has ink goes through the model in one forward
pass, and heat maps (which pixels drove a prediction) in one backward pass.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from contract.jobs import (
    Answer,
    DrawingJob,
    ErrorAnswer,
    HeatMapAnswer,
    HeatMapJob,
    ImageJob,
    Job,
    JobError,
    Prediction,
    PredictionAnswer,
    UploadJob,
)
from digits.inference.images import BadImage, decode_upload, image_to_mnist
from digits.inference.refusal import assess
from digits.inference.render import drawing_png, strokes_to_mnist

log = logging.getLogger(__name__)


class Model(Protocol):
    name: str

    def predict(self, images: np.ndarray) -> np.ndarray: ...

    def saliency_batch(self, images: np.ndarray, digits: Sequence[int]) -> np.ndarray: ...  # the heat maps


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    max_pixels: int


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


def to_bytes28(image: np.ndarray) -> bytes:
    """Float 28x28 in [0, 1] -> 784 bytes (255 = ink): what the model sees and the page shows."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8).tobytes()


def from_bytes28(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8).reshape(28, 28).astype(np.float32) / 255.0


def prepare_strokes(strokes: Sequence[Sequence[Sequence[float]]], canvas: Sequence[float], brush: float) -> bytes | None:
    """Strokes -> model input bytes, or None for a drawing without ink."""
    image = strokes_to_mnist(strokes, (canvas[0], canvas[1]), brush)
    return None if image is None else to_bytes28(image)


def prepare_upload(data: bytes, *, max_bytes: int, max_pixels: int) -> bytes:
    """Uploaded PNG/JPEG/WebP/GIF -> model input bytes; raises digits.inference.images.BadImage (refused from its
    headers when it would cost more than any real image: see digits.inference.upload_guard)."""
    return to_bytes28(image_to_mnist(decode_upload(data, max_bytes=max_bytes, max_pixels=max_pixels)))


def render_png(strokes: Sequence[Sequence[Sequence[float]]], canvas: Sequence[float], brush: float) -> bytes:
    return drawing_png(strokes, (canvas[0], canvas[1]), brush)


def classify_batch(model: Model, images28: Sequence[bytes]) -> list[Prediction]:
    """Images through the model in one forward pass: for each, the digit, its confidence, all ten
    probabilities, and whether it looks like no digit at all (see digits.inference.refusal)."""
    if not images28:
        return []
    images = np.stack([from_bytes28(b) for b in images28])
    probs = model.predict(images)
    out = []
    for image, p in zip(images, probs):
        digit = int(np.argmax(p))
        uncertain, reason = assess(image, p)
        out.append(Prediction(digit, round(float(p[digit]), 6), [round(float(v), 6) for v in p], model.name, uncertain, reason))
    return out


def classify(model: Model, image28: bytes) -> dict[str, Any]:
    """One image: the prediction's fields as a dict (the in-process benchmark server uses it)."""
    return classify_batch(model, [image28])[0].to_wire()


def empty_prediction(model_name: str) -> dict[str, Any]:
    """The prediction of a drawing without ink, as a dict."""
    return Prediction.empty(model_name).to_wire()


def heat_maps(model: Model, images28: Sequence[bytes], digits: Sequence[int]) -> list[bytes]:
    """784 bytes per image: how much each pixel drove the score of its digit (255 = most)."""
    if not images28:
        return []
    heat = model.saliency_batch(np.stack([from_bytes28(b) for b in images28]), digits)
    return [to_bytes28(h) for h in heat]


def heat_map_base64(model: Model, image28: bytes, digit: int) -> str:
    """Base64 of one heat map (the HTTP answer's field)."""
    return base64.b64encode(heat_maps(model, [image28], [digit])[0]).decode()


def _waited_ms(job: Job) -> float:
    """Time the job spent in Redis since it was published (wall clock: sender and worker share a host)."""
    return round(max(0.0, time.time() - job.sent_at) * 1000, 3) if job.sent_at else 0.0


def preprocess_uploads(jobs: Sequence[Job], limits: UploadLimits) -> tuple[list[ImageJob], list[Answer]]:
    """Decode each upload into the model's input: (image jobs ready for the model, error answers)."""
    ready: list[ImageJob] = []
    failed: list[Answer] = []
    for job in jobs:
        start = time.perf_counter()
        timings = {**job.timings, "queue_preprocess": _waited_ms(job)}
        try:
            if not isinstance(job, UploadJob):
                raise ValueError("preprocess_uploads takes uploads only")
            image = prepare_upload(job.upload, max_bytes=limits.max_bytes, max_pixels=limits.max_pixels)
        except BadImage as exc:
            failed.append(ErrorAnswer(job.id, job.client, error=JobError(exc.code, exc.message)))
            continue
        except Exception:  # a bug must not take the batch down: answer, log, go on
            log.exception("preprocessing upload %s failed", job.id)
            failed.append(ErrorAnswer(job.id, job.client, error=JobError("internal", "preprocessing failed")))
            continue
        timings["preprocess"] = _ms(start)
        ready.append(ImageJob(job.id, job.client, job.reply, image=image, heat_map=job.heat_map, timings=timings))
    return ready, failed


def predict_jobs(model: Model, jobs: Sequence[Job], *, model_name: str) -> list[Answer]:
    """Answer a batch: render strokes, then one forward pass for every image with ink.

    `model_name` names the empty prediction of a drawing without ink (no forward pass needed)."""
    images: dict[str, bytes | None] = {}
    pngs: dict[str, bytes] = {}
    errors: dict[str, JobError] = {}
    timings: dict[str, dict[str, float]] = {}
    for job in jobs:
        start = time.perf_counter()
        t = timings[job.id] = {**job.timings, "queue_inference": _waited_ms(job)}
        try:
            if isinstance(job, ImageJob):
                images[job.id] = job.image
            elif isinstance(job, DrawingJob):
                s = job.strokes
                images[job.id] = prepare_strokes(s.strokes, s.canvas, s.brush)
                if job.png:
                    pngs[job.id] = render_png(s.strokes, s.canvas, s.brush)
            else:
                raise ValueError(f"job {job.id} has no image or strokes")
        except Exception:
            log.exception("preparing job %s failed", job.id)
            errors[job.id] = JobError("internal", "preprocessing failed")
            continue
        t["preprocess"] = t.get("preprocess", 0.0) + _ms(start)

    inked = {job.id: image for job in jobs if (image := images.get(job.id)) is not None}
    start = time.perf_counter()
    predictions: dict[str, Prediction] = {}
    heat: dict[str, bytes] = {}
    try:
        predictions = dict(zip(inked, classify_batch(model, list(inked.values()))))
        inline = [
            (j.id, d)
            for j in jobs
            if isinstance(j, ImageJob) and j.heat_map and j.id in inked and (d := predictions[j.id].digit) is not None
        ]
        heat = dict(zip((jid for jid, _ in inline), heat_maps(model, [inked[jid] for jid, _ in inline], [d for _, d in inline])))
    except Exception:
        log.exception("inference failed for a batch of %d", len(inked))
        predictions, heat = {}, {}
        errors.update({jid: JobError("internal", "inference failed") for jid in inked})
    forward_ms = _ms(start)

    answers: list[Answer] = []
    for job in jobs:
        done = {**timings[job.id], "inference": forward_ms, "batch": float(len(jobs))}
        if job.id in errors:
            answers.append(ErrorAnswer(job.id, job.client, error=errors[job.id], timings=done))
            continue
        image = images.get(job.id)
        prediction = predictions[job.id] if image is not None else Prediction.empty(model_name)
        answers.append(
            PredictionAnswer(
                job.id,
                job.client,
                prediction=prediction,
                image=image,
                png=pngs.get(job.id),
                heat_map=heat.get(job.id),
                timings=done,
            )
        )
    return answers


def heat_map_answers(model: Model, jobs: Sequence[Job]) -> list[Answer]:
    """Heat-map jobs (an image and the digit whose evidence is wanted) in one backward pass."""
    ready = [j for j in jobs if isinstance(j, HeatMapJob)]
    maps = heat_maps(model, [j.image for j in ready], [j.digit for j in ready])
    return [HeatMapAnswer(job.id, job.client, heat_map=heat) for job, heat in zip(ready, maps)]
