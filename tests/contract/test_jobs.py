"""The job contract: every value survives the wire (msgpack, as Celery and the layer send it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgpack

from contract.jobs import (
    HEAT_TASK,
    PREDICT_QUEUE,
    PREDICT_TASK,
    PREPARE_QUEUE,
    PREPARE_TASK,
    Answer,
    Answers,
    Batch,
    Job,
    JobError,
    Prediction,
    Saliency,
    Strokes,
)

ROOT = Path(__file__).resolve().parents[2]


def over_the_wire(value: dict) -> dict:
    return msgpack.unpackb(msgpack.packb(value, use_bin_type=True), raw=False)


def test_a_batch_of_every_kind_of_job_survives_the_wire() -> None:
    jobs = [
        Job(id="a", client="c1", reply="web.1", strokes=Strokes([[[1.0, 2.5], [3.0, 4.0]]], (280.0, 200.0), 16.0), png=True),
        Job(id="b", client="c2", reply="web.1", upload=b"\x89PNG\x00\xff", saliency=Saliency.INLINE),
        Job(id="c", client="c3", reply="web.2", image=bytes(range(256)) * 3 + bytes(16), explain=4, timings={"preprocess": 1.5}),
    ]
    batch = Batch.from_wire(over_the_wire(Batch("b1", jobs).to_wire()))
    assert batch.id == "b1" and all(j.sent_at > 0 for j in batch.jobs)
    for original, copy in zip(jobs, batch.jobs):
        copy.sent_at = original.sent_at
        assert copy == original


def test_each_kind_of_job_names_its_task_and_queue() -> None:
    drawing = Job(id="a", client="c", reply="r", strokes=Strokes([[[1.0, 2.0]]], (280.0, 280.0), 16.0))
    upload = Job(id="b", client="c", reply="r", upload=b"png")
    heat = Job(id="c", client="c", reply="r", image=bytes(784), explain=3)
    assert [(j.task, j.queue) for j in (drawing, upload, heat)] == [
        (PREDICT_TASK, PREDICT_QUEUE),
        (PREPARE_TASK, PREPARE_QUEUE),
        (HEAT_TASK, PREPARE_QUEUE),
    ]


def test_answers_survive_the_wire() -> None:
    answers = [
        Answer(
            "a",
            "c1",
            prediction=Prediction(3, 0.9, [0.1] * 10, "cnn", True, "low confidence"),
            image=bytes(784),
            png=b"png",
            timings={"inference": 0.4},
        ),
        Answer("b", "c2", error=JobError("bad_image", "not an image")),
        Answer("c", "c3", saliency=bytes([7]) * 784),
        Answer("d", "c4", prediction=Prediction.empty("cnn")),
    ]
    message = Answers.from_wire(over_the_wire(Answers(answers, "b1").to_wire()))
    back = message.answers
    assert back == answers and message.batch == "b1" and message.sent_at > 0
    assert back[2].is_saliency_only and not back[0].is_saliency_only and not back[1].is_saliency_only


def test_the_web_side_imports_no_torch_scipy_or_ml_core() -> None:
    code = (
        "import os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'digitsite.settings');"
        "import digitsite.asgi, recognizer.consumers, recognizer.views, recognizer.jobs;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'scipy', 'skimage', 'cv2'}"
        " or m in {'digits.inference.render', 'digits.inference.predictor', 'digits.inference.images',"
        " 'worker.tasks', 'worker.pipeline'});"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
