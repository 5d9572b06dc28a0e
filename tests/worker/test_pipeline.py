"""A batch through the pipeline: one forward pass, faults kept to their own job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contract.jobs import DrawingJob, ErrorAnswer, HeatMapAnswer, HeatMapJob, ImageJob, PredictionAnswer, Strokes, UploadJob
from digits.inference.predictor import load_predictor
from tests.support.digit_paths import digit_strokes
from worker import pipeline

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model():
    return load_predictor(ROOT / "models")


class CountingModel:
    def __init__(self, inner) -> None:
        self.inner, self.name, self.calls = inner, inner.name, []

    def predict(self, images: np.ndarray) -> np.ndarray:
        self.calls.append(len(images))
        return self.inner.predict(images)

    def saliency_batch(self, images, digits):
        self.calls.append(("saliency", len(images)))
        return self.inner.saliency_batch(images, digits)


def strokes_job(i: int, digit: int, **kw) -> DrawingJob:
    return DrawingJob(
        id=f"j{i}",
        client="c",
        reply="r",
        strokes=Strokes([[list(p) for p in s] for s in digit_strokes(digit)], (280.0, 280.0), 16.0),
        **kw,
    )


def test_a_batch_is_one_forward_pass_and_each_job_gets_its_own_digit(model) -> None:
    counting = CountingModel(model)
    jobs = [strokes_job(d, d) for d in range(10)]
    answers = pipeline.predict_jobs(counting, jobs, model_name=model.name)
    assert counting.calls == [10]
    assert [a.prediction.digit for a in answers] == list(range(10))
    assert [a.id for a in answers] == [j.id for j in jobs]
    for answer in answers:
        single = pipeline.classify(model, answer.image)
        assert answer.prediction.probabilities == pytest.approx(single["probabilities"], abs=1e-5)


def test_an_empty_drawing_and_a_broken_job_do_not_spoil_the_batch(model) -> None:
    empty = DrawingJob(id="e", client="c", reply="r", strokes=Strokes([], (280.0, 280.0), 16.0))
    broken = HeatMapJob(id="b", client="c", reply="r", image=bytes(784), digit=1)  # not a job to predict
    answers = pipeline.predict_jobs(model, [empty, strokes_job(1, 4), broken], model_name="m")
    by_id = {a.id: a for a in answers}
    assert isinstance(by_id["e"], PredictionAnswer) and by_id["e"].prediction.digit is None and by_id["e"].image is None
    assert isinstance(by_id["j1"], PredictionAnswer) and by_id["j1"].prediction.digit == 4
    assert isinstance(by_id["b"], ErrorAnswer) and by_id["b"].error.code == "internal"


def test_heat_maps_of_a_batch_match_one_at_a_time(model) -> None:
    jobs = [strokes_job(d, d, png=(d == 2)) for d in (2, 5, 8)]
    answers = pipeline.predict_jobs(model, jobs, model_name=model.name)
    assert answers[0].png.startswith(b"\x89PNG") and answers[1].png is None
    assert all(a.heat_map is None for a in answers)  # a drawing's heat map is a job of its own
    heat_jobs = [HeatMapJob(id=f"h{a.id}", client="c", reply="r", image=a.image, digit=a.prediction.digit) for a in answers]
    later = pipeline.heat_map_answers(model, heat_jobs)
    assert [answer.id for answer in later] == ["hj2", "hj5", "hj8"]
    for answer, job in zip(later, heat_jobs):
        one = pipeline.to_bytes28(model.saliency(pipeline.from_bytes28(job.image), job.digit))
        assert isinstance(answer, HeatMapAnswer)
        assert np.abs(np.frombuffer(answer.heat_map, np.uint8).astype(int) - np.frombuffer(one, np.uint8)).max() <= 1


def test_an_image_job_asking_for_its_heat_map_gets_it_inline(model) -> None:
    [drawn] = pipeline.predict_jobs(model, [strokes_job(0, 3)], model_name=model.name)
    job = ImageJob(id="i", client="c", reply="r", image=drawn.image, heat_map=True)
    [answer] = pipeline.predict_jobs(model, [job], model_name=model.name)
    assert isinstance(answer, PredictionAnswer) and answer.prediction.digit == 3 and len(answer.heat_map) == 784


def test_a_bad_upload_is_an_error_answer_and_good_ones_go_on(model) -> None:
    good = UploadJob(id="g", client="c", reply="r", upload=_png_of_digit(), heat_map=True)
    bad = UploadJob(id="x", client="c", reply="r", upload=b"not an image")
    ready, failed = pipeline.preprocess_uploads([good, bad], pipeline.UploadLimits(5 * 2**20, 4096 * 4096))
    assert [j.id for j in ready] == ["g"] and len(ready[0].image) == 784 and ready[0].heat_map
    assert isinstance(ready[0], ImageJob) and "preprocess" in ready[0].timings
    assert [(a.id, a.error.code) for a in failed] == [("x", "bad_image")]


def _png_of_digit() -> bytes:
    import io

    from PIL import Image, ImageDraw

    img = Image.new("L", (200, 200), 255)
    draw = ImageDraw.Draw(img)
    for stroke in digit_strokes(7, scale=0.6, offset=(20, 20)):
        draw.line(stroke, fill=0, width=10)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_the_preprocess_task_publishes_decoded_uploads_on_to_predict(monkeypatch, settings) -> None:
    from contract.jobs import Batch
    from contract.tasks import PREDICT_TASK
    from worker import tasks

    published: list[Batch] = []
    sent: list[list] = []
    monkeypatch.setattr(tasks, "publisher", lambda: type("P", (), {"publish": staticmethod(published.append)})())
    monkeypatch.setattr(tasks, "send_answers", lambda jobs, answers, batch="": sent.append(list(answers)))
    good = UploadJob(id="g", client="c", reply="r", upload=_png_of_digit(), heat_map=True)
    bad = UploadJob(id="x", client="c", reply="r", upload=b"not an image")
    tasks.preprocess(Batch("b", [good, bad]).to_wire(1.0))
    [hop] = published
    assert hop.id == "b" and hop.task == PREDICT_TASK and [type(j) for j in hop.jobs] == [ImageJob]
    assert [[a.id for a in answers] for answers in sent] == [["x"]]
