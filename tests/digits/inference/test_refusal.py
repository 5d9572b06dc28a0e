"""Honest refusal: blobs, scribbles and unsure predictions are flagged; ordinary digits are not."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from digits.inference.refusal import assess, features, synthetic_non_digits
from digits.inference.render import strokes_to_mnist
from worker import pipeline

MODELS = Path(__file__).resolve().parents[3] / "models"
CONFIDENT = np.eye(10)[3] * 0.97 + 0.003


def test_filled_blob_is_too_much_ink() -> None:
    yy, xx = np.mgrid[:28, :28]
    disc = (np.hypot(yy - 14, xx - 14) < 10).astype(np.float32)
    assert assess(disc, CONFIDENT) == (True, "too much ink")


def test_many_loops_is_a_scribble() -> None:
    grid = np.zeros((28, 28), np.float32)
    grid[4:24:4, 4:24] = 1.0
    grid[4:24, 4:24:4] = 1.0
    grid[4:21, 20] = 1.0
    assert features(grid)["holes"] >= 9
    assert assess(grid, CONFIDENT) == (True, "too many loops")


def test_features_measure_what_they_name() -> None:
    img = np.zeros((28, 28), np.float32)
    img[0, :] = img[27, :] = img[:, 0] = img[:, 27] = 1.0  # a frame on the image's edge: one hole inside
    img[10:19, 10:19] = 0.9  # a filled 9x9 square: 5 px from its centre to the nearest background
    img[3:5, 3:5] = 0.4  # faint (below half the peak): a piece, not ink
    img[3, 22] = 1.0  # one pixel: too small to be a piece
    f = features(img)
    assert f["holes"] == 1.0  # the background around the square, inside the frame (the frame touches the border)
    assert f["pieces"] == 3.0  # frame, square, faint mark
    assert f["thickness"] == 5.0
    assert f["ink_share"] == (4 * 27 + 81 + 1) / 784

    u = np.zeros((28, 28), np.float32)
    u[0:20, 5] = u[0:20, 20] = u[19, 5:21] = 1.0  # a U open at the image's top edge: no hole
    ring = np.zeros((28, 28), np.float32)
    ring[5:15, 5:15] = 1.0
    ring[7:13, 7:13] = 0.0  # a 6x6 hole
    ring[20:26, 16] = 1.0  # and a separate bar
    assert (features(u)["holes"], features(u)["pieces"]) == (0.0, 1.0)
    assert (features(ring)["holes"], features(ring)["pieces"]) == (1.0, 2.0)


def test_many_separate_marks() -> None:
    dots = np.zeros((28, 28), np.float32)
    for r, c in [(5, 5), (5, 20), (20, 5), (20, 20), (12, 12)]:
        dots[r : r + 3, c : c + 3] = 1.0
    assert assess(dots, CONFIDENT) == (True, "too many pieces")


def test_low_confidence_and_a_plain_digit() -> None:
    one = strokes_to_mnist([[(140, 40), (140, 240)]], (280, 280), 18)
    assert assess(one, CONFIDENT) == (False, None)
    unsure = np.full(10, 0.05)
    unsure[[1, 7]] = [0.35, 0.25]
    assert assess(one, unsure) == (True, "low confidence")


def test_synthetic_non_digits_are_deterministic() -> None:
    a, kinds = synthetic_non_digits(9, seed=3)
    b, _ = synthetic_non_digits(9, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (9, 28, 28) and set(kinds) == {"scribble", "blob", "letter"}


class FakePredictor:
    name = "fake-v0"

    def __init__(self, probs: np.ndarray) -> None:
        self.probs = probs

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.repeat(self.probs[None], len(images), axis=0)


def test_classify_reports_uncertain_and_reason() -> None:
    one = pipeline.to_bytes28(strokes_to_mnist([[(140, 40), (140, 240)]], (280, 280), 18))
    ok = pipeline.classify(FakePredictor(CONFIDENT), one)
    assert ok["digit"] == 3 and ok["uncertain"] is False and ok["reason"] is None and ok["model"] == "fake-v0"
    blob = pipeline.to_bytes28(strokes_to_mnist([[(140, 140)]], (280, 280), 200))
    flagged = pipeline.classify(FakePredictor(CONFIDENT), blob)
    assert flagged["uncertain"] is True and flagged["reason"] == "too much ink"


def test_current_model_rarely_refuses_digits_and_flags_non_digits(mnist_dir: Path) -> None:
    """The shipped model (trained with outlier exposure): few false alarms on MNIST digits, most
    held-out non-digits (unseen seeds and letters) flagged."""
    from digits.data.mnist import load_split
    from digits.inference.predictor import load_predictor
    from digits.inference.refusal import HELD_OUT_LETTERS

    predictor = load_predictor(MODELS)
    images = load_split(mnist_dir, "test")[0][:500].astype(np.float32) / 255.0
    probs = predictor.predict(images)
    false_alarms = sum(assess(img, p)[0] for img, p in zip(images, probs))
    assert false_alarms / len(images) <= 0.02
    others, _ = synthetic_non_digits(60, seed=12345, letters=HELD_OUT_LETTERS)  # seeds/letters unseen in training
    flagged = sum(assess(img, p)[0] for img, p in zip(others, predictor.predict(others)))
    assert flagged / len(others) >= 0.5
