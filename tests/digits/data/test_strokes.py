"""Skeleton tracing of digits into strokes, RDP simplification and densification."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from digits.data.strokes import densify, rdp, skeleton_strokes, stroke_width

DATA_DIR = Path(__file__).resolve().parents[3].parent / "shared/data/mnist"
needs_data = pytest.mark.usefixtures("mnist_dir")  # fails, never skips, without the data


def ring(size: int = 28) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    d = np.hypot(yy - 13.5, xx - 13.5)
    return ((d > 6) & (d < 9)).astype(np.uint8) * 255


def test_vertical_bar_is_one_straight_stroke() -> None:
    img = np.zeros((28, 28), dtype=np.uint8)
    img[4:24, 12:15] = 255
    strokes = skeleton_strokes(img)
    assert len(strokes) == 1
    (x0, y0), (x1, y1) = strokes[0][0], strokes[0][-1]
    assert len(strokes[0]) == 2 and abs(x0 - x1) < 1e-9 and y0 < y1  # drawn top to bottom


def test_ring_is_a_closed_loop() -> None:
    strokes = skeleton_strokes(ring(), tolerance=0.3)
    assert len(strokes) == 1
    s = strokes[0]
    assert len(s) >= 8 and s[0] == s[-1]


def _closed(strokes: list) -> bool:
    return any(len(s) > 3 and s[0] == s[-1] for s in strokes)


def test_loop_blurred_shut_by_grey_ink_stays_a_loop() -> None:
    """A tight loop whose hole holds grey ink bleed (as in many MNIST 9s, 8s and 6s) is traced as a
    loop, not as a line through a filled blob; a pale spot inside a thick stroke opens no loop."""
    img = ring().astype(np.float64)
    yy, xx = np.mgrid[:28, :28]
    img[np.hypot(yy - 13.5, xx - 13.5) <= 6] = 0.5 * 255  # the hole, grey at half the peak
    assert _closed(skeleton_strokes(img.astype(np.uint8), tolerance=0.3))

    bar = np.zeros((28, 28), dtype=np.uint8)
    bar[4:24, 11:17] = 255
    bar[13, 14] = 100  # one pale pixel in the middle of the stroke
    strokes = skeleton_strokes(bar)
    assert len(strokes) == 1 and not _closed(strokes)


def test_rdp_and_densify() -> None:
    line = np.stack([np.linspace(0, 10, 11), np.zeros(11)], axis=1)
    assert len(rdp(line, 0.1)) == 2
    dense = densify([(0, 0), (10, 0), (10, 5)], 1.0)
    assert len(dense) == 16 and dense[0] == (0.0, 0.0) and dense[-1] == (10.0, 5.0)
    steps = np.hypot(*np.diff(np.array(dense), axis=0).T)
    assert steps.max() <= 1.0 + 1e-9
    assert densify([(3, 4)], 2.0) == [(3.0, 4.0)]


def test_blank_image_has_no_strokes() -> None:
    assert skeleton_strokes(np.zeros((28, 28), dtype=np.uint8)) == []


@needs_data
def test_mnist_digits() -> None:
    from digits.data.mnist import load_split

    images, labels = load_split(DATA_DIR, "test")
    for img in images[:100]:
        strokes = skeleton_strokes(img, scale=10.0, offset=(5.0, 7.0))
        assert strokes and any(len(s) >= 2 for s in strokes)
        pts = np.concatenate([np.asarray(s) for s in strokes])
        assert pts[:, 0].min() >= 5 and pts[:, 0].max() <= 285  # scaled into the canvas
        assert pts[:, 1].min() >= 7 and pts[:, 1].max() <= 287
        assert 1.0 <= stroke_width(img) < 8
    ones = [len(skeleton_strokes(img)) for img in images[labels == 1][:30]]
    assert np.mean(ones) <= 1.3 and max(ones) <= 2  # a 1 is (about) one stroke
    zeros = [skeleton_strokes(img) for img in images[labels == 0][:30]]
    closed = [any(len(s) > 3 and np.hypot(s[0][0] - s[-1][0], s[0][1] - s[-1][1]) < 1e-9 for s in z) for z in zeros]
    assert np.mean(closed) > 0.8  # a 0 is a closed loop
