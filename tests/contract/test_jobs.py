"""The job contract: every value survives the wire (msgpack, as Celery and the layer send it), and
the contract imports neither side."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest

from contract.jobs import (
    Answers,
    Batch,
    DrawingJob,
    ErrorAnswer,
    FillRequest,
    HeatMapAnswer,
    HeatMapJob,
    ImageJob,
    JobError,
    Prediction,
    PredictionAnswer,
    Strokes,
    UploadJob,
)
from contract.tasks import (
    FILL_TASK,
    HEAT_MAP_TASK,
    PREDICT_QUEUE,
    PREDICT_TASK,
    PREPROCESS_QUEUE,
    PREPROCESS_TASK,
    task_routes,
)

ROOT = Path(__file__).resolve().parents[2]


def over_the_wire(value: object) -> object:
    return msgpack.unpackb(msgpack.packb(value, use_bin_type=True), raw=False)


def test_a_batch_of_every_kind_of_job_survives_the_wire_stamped_with_its_send_time() -> None:
    jobs = [
        DrawingJob("a", "c1", "web.1", strokes=Strokes([[[1.0, 2.5], [3.0, 4.0]]], (280.0, 200.0), 16.0), png=True),
        UploadJob("b", "c2", "web.1", upload=b"\x89PNG\x00\xff", heat_map=True),
        ImageJob("c", "c3", "web.2", image=bytes(784), heat_map=True, timings={"preprocess": 1.5}),
        HeatMapJob("d", "c3", "web.2", image=bytes(range(256)) * 3 + bytes(16), digit=4),
    ]
    sent = Batch("b1", jobs)
    batch = Batch.from_wire(over_the_wire(sent.to_wire(sent_at=12.5)))
    assert batch.id == "b1" and [j.sent_at for j in batch.jobs] == [12.5] * 4
    assert all(j.sent_at == 0.0 for j in sent.jobs), "encoding a batch changed its jobs"
    for original, copy in zip(jobs, batch.jobs):
        assert type(copy) is type(original) and copy.to_wire(0.0) == original.to_wire(0.0)


def test_each_kind_of_job_names_its_task_and_queue() -> None:
    drawing = DrawingJob("a", "c", "r", strokes=Strokes([[[1.0, 2.0]]], (280.0, 280.0), 16.0))
    upload = UploadJob("b", "c", "r", upload=b"png")
    image = ImageJob("b", "c", "r", image=bytes(784))
    heat = HeatMapJob("c", "c", "r", image=bytes(784), digit=3)
    assert [(j.task, j.queue) for j in (drawing, upload, image, heat)] == [
        (PREDICT_TASK, PREDICT_QUEUE),
        (PREPROCESS_TASK, PREPROCESS_QUEUE),
        (PREDICT_TASK, PREDICT_QUEUE),
        (HEAT_MAP_TASK, PREPROCESS_QUEUE),
    ]
    assert Batch("x", [drawing, image]).task == PREDICT_TASK
    with pytest.raises(ValueError, match="a batch holds the jobs of one task"):
        _ = Batch("y", [drawing, heat]).task


def test_a_fill_request_is_the_list_of_its_drawings() -> None:
    request = FillRequest((3, 4))
    assert request.task == FILL_TASK and request.to_wire() == [3, 4] and request.argsrepr() == "([3, 4],)"
    assert FillRequest.from_wire(over_the_wire(request.to_wire())) == request


def test_answers_survive_the_wire() -> None:
    answers = [
        PredictionAnswer(
            "a",
            "c1",
            prediction=Prediction(3, 0.9, [0.1] * 10, "cnn", True, "low confidence"),
            image=bytes(784),
            png=b"png",
            heat_map=bytes([1]) * 784,
            timings={"inference": 0.4},
        ),
        ErrorAnswer("b", "c2", error=JobError("bad_image", "not an image")),
        HeatMapAnswer("c", "c3", heat_map=bytes([7]) * 784),
        PredictionAnswer("d", "c4", prediction=Prediction.empty("cnn")),
    ]
    message = Answers.from_wire(over_the_wire(Answers(answers, "b1").to_wire(sent_at=5.0)))
    assert message.answers == answers and message.batch == "b1" and message.sent_at == 5.0


def test_routes_send_each_task_to_its_queue_and_fills_persist_where_asked() -> None:
    routes = task_routes(durable_fills=False)
    assert routes[PREDICT_TASK] == {"queue": PREDICT_QUEUE} and all(set(r) == {"queue"} for r in routes.values())
    assert task_routes(durable_fills=True)[FILL_TASK] == {"queue": PREPROCESS_QUEUE, "delivery_mode": "persistent"}


def imported_by(modules: str, bad: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'digitsite.settings.local');"
        f"import {modules};"
        f"bad = sorted(m for m in sys.modules if {bad});"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    env = {**os.environ, "DJANGO_DEBUG": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)


def test_the_contract_imports_neither_side() -> None:
    run = imported_by(
        "contract.jobs, contract.tasks, contract.heartbeats, contract.publish, contract.task_messages",
        "m.split('.')[0] in {'django', 'recognizer', 'review', 'worker', 'edge', 'digitsite', 'digits', 'torch', 'celery'}",
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_web_side_imports_no_torch_scipy_ml_core_or_worker_code() -> None:
    run = imported_by(
        "digitsite.asgi, recognizer.consumers, recognizer.views, recognizer.job_client, recognizer.health, recognizer.metrics",
        "m.split('.')[0] in {'torch', 'scipy', 'skimage', 'cv2', 'worker'}"
        " or m in {'digits.inference.render', 'digits.inference.predictor', 'digits.inference.images'}",
    )
    assert run.returncode == 0, run.stdout + run.stderr
