"""The one contract between the web processes and the workers: jobs in, answers out.

Every job and every answer is one of the variants below (a dataclass per kind, no optional-field
bundles), encoded by its `to_wire` and decoded by `job_from_wire` / `answer_from_wire`. Wire values
are plain msgpack-able dicts (bytes stay bytes: Celery and the channel layer both speak msgpack
here); each names its `kind`. Encoders are pure: the send time is an argument, nothing is mutated.

A web process gathers the jobs of all its connections and publishes them as one `Batch` (one task
message) by task name (contract.tasks); a worker answers a batch with one `Answers` message per web
process (its `reply` channel), which that process fans out to its connections in memory by
`client`. This module imports nothing heavy: the web side uses it without torch or the ML core.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import Any, ClassVar

from contract.tasks import FILL_TASK, HEAT_MAP_TASK, PREDICT_TASK, PREPROCESS_TASK, TASK_QUEUES

ANSWERS_TYPE = "job.answers"  # channel-layer message type of an `Answers`


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


# ---- jobs


@dataclass(frozen=True)
class _JobBase:
    """What every job carries: who gets the answer, when it was last published, its timings so far."""

    kind: ClassVar[str]
    task: ClassVar[str]
    id: str
    client: str  # the connection (or waiting request) in the web process that gets the answer
    reply: str  # the web process's channel
    _: KW_ONLY
    sent_at: float = 0.0  # wall clock when last published: queue wait = worker's now - sent_at
    timings: dict[str, float] = field(default_factory=dict)  # ms per phase so far (workers add to it)

    @property
    def queue(self) -> str:
        return TASK_QUEUES[self.task]

    def _wire(self, sent_at: float | None, **fields: Any) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "id": self.id, "client": self.client, "reply": self.reply}
        d["sent_at"] = self.sent_at if sent_at is None else sent_at
        if self.timings:
            d["timings"] = self.timings
        return {**d, **fields}


@dataclass(frozen=True)
class DrawingJob(_JobBase):
    """A drawing to predict (strokes rendered by the worker); `png`: also render it as a PNG (stored drawings)."""

    kind: ClassVar[str] = "drawing"
    task: ClassVar[str] = PREDICT_TASK
    strokes: Strokes
    png: bool = False

    def to_wire(self, sent_at: float | None = None) -> dict[str, Any]:
        return self._wire(sent_at, strokes=self.strokes.to_wire(), png=self.png)


@dataclass(frozen=True)
class UploadJob(_JobBase):
    """An uploaded PNG/JPEG to decode (on the preprocess queue), then predict as an `ImageJob`;
    `heat_map`: the answer carries the heat map too (one reply per request)."""

    kind: ClassVar[str] = "upload"
    task: ClassVar[str] = PREPROCESS_TASK
    upload: bytes
    heat_map: bool = False

    def to_wire(self, sent_at: float | None = None) -> dict[str, Any]:
        return self._wire(sent_at, upload=self.upload, heat_map=self.heat_map)


@dataclass(frozen=True)
class ImageJob(_JobBase):
    """A ready 28x28 image (784 bytes, the model's input) to predict: a decoded upload."""

    kind: ClassVar[str] = "image"
    task: ClassVar[str] = PREDICT_TASK
    image: bytes
    heat_map: bool = False

    def to_wire(self, sent_at: float | None = None) -> dict[str, Any]:
        return self._wire(sent_at, image=self.image, heat_map=self.heat_map)


@dataclass(frozen=True)
class HeatMapJob(_JobBase):
    """The heat map of `image` for `digit`: the pixels that drove a prediction already shown."""

    kind: ClassVar[str] = "heat_map"
    task: ClassVar[str] = HEAT_MAP_TASK
    image: bytes
    digit: int

    def to_wire(self, sent_at: float | None = None) -> dict[str, Any]:
        return self._wire(sent_at, image=self.image, digit=self.digit)


Job = DrawingJob | UploadJob | ImageJob | HeatMapJob


def job_from_wire(d: dict[str, Any]) -> Job:
    common: dict[str, Any] = {
        "id": d["id"],
        "client": d["client"],
        "reply": d["reply"],
        "sent_at": float(d.get("sent_at", 0.0)),
        "timings": dict(d.get("timings", {})),
    }
    kind = d["kind"]
    if kind == DrawingJob.kind:
        return DrawingJob(strokes=Strokes.from_wire(d["strokes"]), png=bool(d.get("png")), **common)
    if kind == UploadJob.kind:
        return UploadJob(upload=d["upload"], heat_map=bool(d.get("heat_map")), **common)
    if kind == ImageJob.kind:
        return ImageJob(image=d["image"], heat_map=bool(d.get("heat_map")), **common)
    if kind == HeatMapJob.kind:
        return HeatMapJob(image=d["image"], digit=int(d["digit"]), **common)
    raise ValueError(f"unknown job kind {kind!r}")


@dataclass(frozen=True)
class Batch:
    """One task message: the jobs (all of one task) a web process gathered. Its answers come back in
    one `Answers` message per web process that names the batch, so the sender knows the batch is done."""

    id: str
    jobs: list[Job]

    @property
    def task(self) -> str:
        tasks = {job.task for job in self.jobs}
        if len(tasks) != 1:
            raise ValueError(f"a batch holds the jobs of one task, not {sorted(tasks)}")
        return tasks.pop()

    def to_wire(self, sent_at: float) -> dict[str, Any]:
        """The task's argument; every job is stamped `sent_at` on the wire (the jobs are not changed)."""
        return {"id": self.id, "jobs": [job.to_wire(sent_at) for job in self.jobs]}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Batch:
        return cls(str(d.get("id", "")), [job_from_wire(j) for j in d["jobs"]])

    def argsrepr(self) -> str:
        """What Celery logs for the task's arguments: the batch's size. Without it Celery repr()s every
        point of every drawing on each publish (about 1 ms a drawing)."""
        return f"(<batch of {len(self.jobs)}>,)"


@dataclass(frozen=True)
class FillRequest:
    """Stored drawings (primary keys) whose predictions a worker should fill in."""

    task: ClassVar[str] = FILL_TASK
    pks: tuple[int, ...]

    def to_wire(self, sent_at: float = 0.0) -> list[int]:
        return list(self.pks)

    @classmethod
    def from_wire(cls, pks: list[Any]) -> FillRequest:
        return cls(tuple(int(pk) for pk in pks))

    def argsrepr(self) -> str:
        return f"({list(self.pks)!r},)"


TaskPayload = Batch | FillRequest  # the one argument of a task message


# ---- answers


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
class _AnswerBase:
    kind: ClassVar[str]
    id: str  # the job's
    client: str
    _: KW_ONLY
    timings: dict[str, float] = field(default_factory=dict)

    def _wire(self, **fields: Any) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "id": self.id, "client": self.client}
        if self.timings:
            d["timings"] = self.timings
        return {**d, **fields}


@dataclass(frozen=True)
class PredictionAnswer(_AnswerBase):
    """A prediction, with the image the model saw (None for a drawing without ink), the PNG if asked
    for, and the heat map if the job asked for it inline."""

    kind: ClassVar[str] = "prediction"
    prediction: Prediction
    image: bytes | None = None
    png: bytes | None = None
    heat_map: bytes | None = None

    def to_wire(self) -> dict[str, Any]:
        return self._wire(prediction=self.prediction.to_wire(), image=self.image, png=self.png, heat_map=self.heat_map)


@dataclass(frozen=True)
class ErrorAnswer(_AnswerBase):
    kind: ClassVar[str] = "error"
    error: JobError

    def to_wire(self) -> dict[str, Any]:
        return self._wire(error=[self.error.code, self.error.message])


@dataclass(frozen=True)
class HeatMapAnswer(_AnswerBase):
    """The answer to a `HeatMapJob`: 784 bytes, how much each pixel drove the digit's score."""

    kind: ClassVar[str] = "heat_map"
    heat_map: bytes

    def to_wire(self) -> dict[str, Any]:
        return self._wire(heat_map=self.heat_map)


Answer = PredictionAnswer | ErrorAnswer | HeatMapAnswer


def answer_from_wire(d: dict[str, Any]) -> Answer:
    common: dict[str, Any] = {"id": d["id"], "client": d["client"], "timings": dict(d.get("timings", {}))}
    kind = d["kind"]
    if kind == PredictionAnswer.kind:
        p = Prediction.from_wire(d["prediction"])
        return PredictionAnswer(prediction=p, image=d.get("image"), png=d.get("png"), heat_map=d.get("heat_map"), **common)
    if kind == ErrorAnswer.kind:
        return ErrorAnswer(error=JobError(*d["error"]), **common)
    if kind == HeatMapAnswer.kind:
        return HeatMapAnswer(heat_map=d["heat_map"], **common)
    raise ValueError(f"unknown answer kind {kind!r}")


@dataclass(frozen=True)
class Answers:
    """One channel-layer message to a web process: its share of a batch's answers (`batch` names
    the batch they answer; empty for heat maps, which follow once a batch is already done)."""

    answers: list[Answer]
    batch: str = ""
    sent_at: float = 0.0  # wall clock when the worker sent it

    def to_wire(self, sent_at: float) -> dict[str, Any]:
        return {"type": ANSWERS_TYPE, "batch": self.batch, "sent_at": sent_at, "answers": [a.to_wire() for a in self.answers]}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Answers:
        return cls([answer_from_wire(a) for a in d["answers"]], str(d.get("batch", "")), float(d.get("sent_at", 0.0)))
