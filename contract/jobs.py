"""The one contract between the web processes and the workers: jobs in, answers out.

Everything that crosses a process boundary is one of these dataclasses, encoded by its `to_wire`
and decoded by its `from_wire`, and never changes meaning in transit. Wire values are plain
msgpack-able dicts (bytes stay bytes: Celery and the channel layer both speak msgpack here).

A web process gathers the jobs of all its connections and publishes them as one `Batch` (one
Celery message) by task name; a worker answers a batch with one `Answers` message per web
process (its `reply` channel), which that process fans out to its connections in memory by
`client`. This module imports nothing heavy: the web side uses it without torch or the ML core.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

JOB_EXPIRES_S = 30  # a batch nobody can wait for any more is dropped, not run
MAX_BATCH = 64  # jobs per Celery message: bounds one worker step (and one forward pass)

# Task names and queues: the web side publishes by name and never imports worker code.
PREPARE_TASK = "worker.tasks.prepare"  # decode uploads (up to 10-30 ms each): their own queue
PREDICT_TASK = "worker.tasks.predict"  # strokes or ready 28x28 images -> predictions
# Stored drawings (by primary key) -> their predictions. Filling one in writes to the database, and a
# hung database holds its worker: on the preprocess queue, never in front of a live prediction.
FILL_TASK = "worker.tasks.fill_drawings"
HEAT_TASK = "worker.tasks.heat"  # heat maps of predictions already shown: off the live path
PREPARE_QUEUE = "preprocess"
PREDICT_QUEUE = "inference"
QUEUES = (PREPARE_QUEUE, PREDICT_QUEUE)
TASK_QUEUES = {PREPARE_TASK: PREPARE_QUEUE, HEAT_TASK: PREPARE_QUEUE, FILL_TASK: PREPARE_QUEUE, PREDICT_TASK: PREDICT_QUEUE}

ANSWERS_TYPE = "job.answers"  # channel-layer message type of an `Answers`


class Saliency(str, Enum):
    """Whether a job wants the heat map of the pixels that drove its prediction in its answer. (A
    drawing's heat map is a job of its own, `explain`, asked for once its prediction stayed on screen.)"""

    NONE = "none"
    INLINE = "inline"  # in the answer itself (uploads: one reply per request)


@dataclass(frozen=True)
class Strokes:
    """A drawing as the page sent it: polylines in canvas CSS pixels."""

    strokes: list[list[list[float]]]
    canvas: tuple[float, float]
    brush: float

    def to_wire(self) -> dict[str, Any]:
        return {"strokes": self.strokes, "canvas": list(self.canvas), "brush": self.brush}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Strokes:
        return cls(d["strokes"], (float(d["canvas"][0]), float(d["canvas"][1])), float(d["brush"]))


@dataclass
class Job:
    """One thing to recognise. Exactly one of `strokes`, `upload` (PNG/JPEG bytes) or `image`
    (784 bytes, the model's input) is set; a prepare step turns an upload into an image. A job with
    `explain` set asks only for the heat map of `image` for that digit (a prediction already sent)."""

    id: str
    client: str  # the connection (or waiting request) in the web process that gets the answer
    reply: str  # the web process's channel
    strokes: Strokes | None = None
    upload: bytes | None = None
    image: bytes | None = None
    png: bool = False  # also render the drawing as a PNG (stored drawings)
    saliency: Saliency = Saliency.NONE
    explain: int | None = None  # heat-map jobs: the digit whose evidence is wanted
    sent_at: float = 0.0  # wall clock when last published: queue wait = worker's now - sent_at
    timings: dict[str, float] = field(default_factory=dict)  # ms per phase so far

    @property
    def task(self) -> str:
        if self.explain is not None:
            return HEAT_TASK
        return PREPARE_TASK if self.upload is not None else PREDICT_TASK

    @property
    def queue(self) -> str:
        return TASK_QUEUES[self.task]

    def to_wire(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "client": self.client, "reply": self.reply, "sent_at": self.sent_at}
        if self.strokes is not None:
            d["strokes"] = self.strokes.to_wire()
        if self.upload is not None:
            d["upload"] = self.upload
        if self.image is not None:
            d["image"] = self.image
        if self.png:
            d["png"] = True
        if self.saliency is not Saliency.NONE:
            d["saliency"] = self.saliency.value
        if self.explain is not None:
            d["explain"] = self.explain
        if self.timings:
            d["timings"] = self.timings
        return d

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Job:
        return cls(
            id=d["id"],
            client=d["client"],
            reply=d["reply"],
            strokes=Strokes.from_wire(d["strokes"]) if "strokes" in d else None,
            upload=d.get("upload"),
            image=d.get("image"),
            png=bool(d.get("png")),
            saliency=Saliency(d.get("saliency", "none")),
            explain=d.get("explain"),
            sent_at=float(d.get("sent_at", 0.0)),
            timings=dict(d.get("timings", {})),
        )


@dataclass(frozen=True)
class Prediction:
    """What the model said about one image. `digit` is None for a drawing without ink."""

    digit: int | None
    confidence: float | None
    probabilities: list[float] | None
    model: str
    uncertain: bool = False
    reason: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "digit": self.digit,
            "confidence": self.confidence,
            "probabilities": self.probabilities,
            "model": self.model,
            "uncertain": self.uncertain,
            "reason": self.reason,
        }

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Prediction:
        return cls(d["digit"], d["confidence"], d["probabilities"], d["model"], bool(d["uncertain"]), d["reason"])

    @classmethod
    def empty(cls, model: str) -> Prediction:
        return cls(None, None, None, model)


@dataclass(frozen=True)
class JobError:
    code: str  # "bad_image", "too_large", "empty_image", "internal"
    message: str


@dataclass(frozen=True)
class Answer:
    """The worker's reply to one job: a prediction (with the image it saw, the PNG if asked for,
    the heat map if inline) or an error. A heat map asked for on its own (`explain`) comes as an Answer with
    only `saliency` set (`prediction` and `error` both None)."""

    id: str
    client: str
    prediction: Prediction | None = None
    error: JobError | None = None
    image: bytes | None = None
    png: bytes | None = None
    saliency: bytes | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def is_saliency_only(self) -> bool:
        return self.prediction is None and self.error is None

    def to_wire(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "client": self.client}
        if self.prediction is not None:
            d["prediction"] = self.prediction.to_wire()
        if self.error is not None:
            d["error"] = [self.error.code, self.error.message]
        for name in ("image", "png", "saliency"):
            if getattr(self, name) is not None:
                d[name] = getattr(self, name)
        if self.timings:
            d["timings"] = self.timings
        return d

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Answer:
        return cls(
            id=d["id"],
            client=d["client"],
            prediction=Prediction.from_wire(d["prediction"]) if "prediction" in d else None,
            error=JobError(*d["error"]) if "error" in d else None,
            image=d.get("image"),
            png=d.get("png"),
            saliency=d.get("saliency"),
            timings=dict(d.get("timings", {})),
        )


@dataclass
class Batch:
    """One Celery message: the jobs a web process gathered. Its answers come back in one `Answers`
    message per web process that names the batch, so the sender knows the batch is done."""

    id: str
    jobs: list[Job]

    def to_wire(self) -> dict[str, Any]:
        now = time.time()
        for job in self.jobs:
            job.sent_at = now
        return {"id": self.id, "jobs": [job.to_wire() for job in self.jobs]}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Batch:
        return cls(str(d.get("id", "")), [Job.from_wire(j) for j in d["jobs"]])


@dataclass
class Answers:
    """One channel-layer message to a web process: its share of a batch's answers (`batch` names
    the batch they answer; empty for heat maps, which follow once a batch is already done)."""

    answers: list[Answer]
    batch: str = ""
    sent_at: float = 0.0  # wall clock when the worker sent it

    def to_wire(self) -> dict[str, Any]:
        return {"type": ANSWERS_TYPE, "batch": self.batch, "sent_at": time.time(), "answers": [a.to_wire() for a in self.answers]}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Answers:
        return cls([Answer.from_wire(a) for a in d["answers"]], str(d.get("batch", "")), float(d.get("sent_at", 0.0)))


def batch_repr(batch: dict[str, Any]) -> str:
    """What Celery logs for a batch's arguments: its size. Without it Celery repr()s every point of
    every drawing on each publish (about 1 ms a drawing)."""
    return f"(<batch of {len(batch['jobs'])}>,)"
