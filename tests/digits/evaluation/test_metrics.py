"""digits.evaluation.metrics: the figures of a set of predictions, without torch."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from digits.evaluation.metrics import (
    confusion_matrix,
    confusion_png,
    expected_calibration_error,
    format_confusion,
    summarize,
    uncalibrated,
)


def test_ece_and_confusion_matrix() -> None:
    labels = np.array([0, 1, 2, 3])
    perfect = np.eye(10)[labels]
    assert expected_calibration_error(perfect, labels) == pytest.approx(0.0)
    # always 60% confident, right half the time: ECE 0.1
    probs = np.full((4, 10), 0.4 / 9)
    probs[np.arange(4), [0, 1, 5, 5]] = 0.6
    assert expected_calibration_error(probs, labels) == pytest.approx(0.1)
    cm = confusion_matrix(labels, probs.argmax(1))
    assert cm.sum() == 4 and cm[0, 0] == 1 and cm[2, 5] == 1 and cm[3, 5] == 1


def test_uncalibrated_undoes_the_temperature() -> None:
    logits = np.random.default_rng(0).normal(size=(5, 10)) * 4

    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    np.testing.assert_allclose(uncalibrated(softmax(logits / 1.7), 1.7), softmax(logits), atol=1e-9)


def test_confusion_png() -> None:
    cm = np.diag(np.full(10, 50))
    cm[7, 1] = 3
    img = Image.open(io.BytesIO(confusion_png(cm, "test")))
    assert img.format == "PNG" and img.width > 400 and img.mode == "RGB"
    assert img.getpixel((40 + 44 + 22, 60 + 7 * 44 + 5))[1] < 255  # an error (7 read as 1): shaded red


def test_summarize_gives_every_figure() -> None:
    labels = np.array([0, 1, 2, 3])
    probs = np.eye(10)[[0, 1, 2, 5]] * 0.9 + 0.01
    out = summarize(probs, labels, temperature=2.0)
    assert (out["count"], out["accuracy"], out["errors"]) == (4, 0.75, 1)
    assert out["per_class_accuracy"]["3"] == 0.0 and out["confusion"][3][5] == 1
    assert "ece_uncalibrated" in out and "ece_uncalibrated" not in summarize(probs, labels)
    assert format_confusion(out["confusion"]).splitlines()[0].startswith("true\\pred")


def test_the_metrics_import_neither_torch_nor_the_rest_of_the_package() -> None:
    modules = "sorted(m for m in sys.modules if m == 'torch' or m.count('.') > 1 and m.startswith('digits.'))"
    code = f"import sys, digits.evaluation.metrics; print({modules})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['digits.evaluation.metrics']"
