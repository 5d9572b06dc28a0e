"""import_uji: the UJI dev digits become stored drawings as the page would have sent them (fitted to
the canvas, the page's brush), each naming its writer, labelled as reviewed; a second run adds
nothing; new rows' predictions are queued after the commit in the workers' batch size, or left to
the sweep with --no-queue."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from contract.tasks import MAX_BATCH
from digits.data import uji
from digits.training.collected import writer_of
from recognizer.models import Drawing
from review.management.commands import import_uji
from worker.pipeline import prepare_strokes

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def digits() -> list[uji.PenDigit]:
    return uji.load_dev(uji.DEFAULT_DIR)


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """What the command asks the workers to predict (instead of Celery)."""
    calls: list[list[int]] = []
    monkeypatch.setattr(import_uji, "publish_fill", lambda pks: calls.append(list(pks)))
    return calls


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("import_uji", *args, stdout=out)
    return out.getvalue()


def test_every_dev_digit_is_stored_as_the_page_would_send_it(
    digits: list[uji.PenDigit], queued: list[list[int]], django_capture_on_commit_callbacks: Callable
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        out = run()
    assert "400 drawings imported, 0 already there; 400 predictions queued" in out
    rows = {r.client_id: r for r in Drawing.objects.all()}
    assert len(rows) == 400
    for d in digits:
        row = rows[f"uji-{d.writer}-{d.label}-{d.sample}"]
        assert writer_of(row.client_id) == d.writer  # what retrain reads back
        assert row.strokes == uji.fit_to_canvas(d.strokes)
        assert (row.canvas_width, row.canvas_height, row.brush) == (*uji.CANVAS, uji.BRUSH)
        assert (row.label, row.review_label, row.effective_label) == (None, d.label, d.label)
        assert row.reviewed_at is not None and row.predicted_at is None
    # the worker's rendering of a stored row is what evaluate's UJI figures read
    for d in digits[::40]:
        row = rows[f"uji-{d.writer}-{d.label}-{d.sample}"]
        stored = np.frombuffer(prepare_strokes(row.strokes, (row.canvas_width, row.canvas_height), row.brush), np.uint8)
        expected = np.clip(np.rint(uji.render([d])[0] * 255), 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(stored.reshape(28, 28), expected)
    # queued after the commit, in the workers' batch size, every new row once
    assert all(len(chunk) <= MAX_BATCH for chunk in queued) and len(queued) == -(-400 // MAX_BATCH)
    assert sorted(pk for chunk in queued for pk in chunk) == sorted(r.pk for r in rows.values())


def test_a_second_run_adds_nothing(queued: list[list[int]], django_capture_on_commit_callbacks: Callable) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        run()
    first = sorted(Drawing.objects.values_list("pk", "content_hash", "review_label", "reviewed_at"))
    queued.clear()
    with django_capture_on_commit_callbacks(execute=True):
        out = run()
    assert "0 drawings imported, 400 already there; 0 predictions queued" in out
    assert sorted(Drawing.objects.values_list("pk", "content_hash", "review_label", "reviewed_at")) == first
    assert queued == []


def test_nothing_is_queued_before_the_commit(queued: list[list[int]], django_capture_on_commit_callbacks: Callable) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run()
    assert queued == [] and callbacks  # asked for only once the rows are committed


def test_no_queue_leaves_the_rows_to_the_sweep(
    queued: list[list[int]], tmp_path: Path, django_capture_on_commit_callbacks: Callable
) -> None:
    subset = [
        {"label": 7, "writer": "W05", "sample": "s-01", "strokes": [[[0, 0], [10, 0], [4, 20]]]},
        {"label": 1, "writer": "W06", "sample": "s-01", "strokes": [[[5, 0], [5, 30]], [[3, 2], [5, 0]]]},
    ]
    (tmp_path / uji.DEV_FILE).write_text(json.dumps(subset))
    with django_capture_on_commit_callbacks(execute=True):
        out = run("--path", str(tmp_path / uji.DEV_FILE), "--no-queue")
    assert "2 drawings imported" in out and "0 predictions queued" in out
    assert queued == []
    assert sorted(Drawing.objects.values_list("client_id", "review_label", "predicted_at")) == [
        ("uji-W05-7-s-01", 7, None),
        ("uji-W06-1-s-01", 1, None),
    ]


def test_a_missing_set_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="expected"):
        run("--path", str(tmp_path))
    (tmp_path / "other.json").write_text("[]")
    with pytest.raises(CommandError, match="expected"):
        run("--path", str(tmp_path / "other.json"))
