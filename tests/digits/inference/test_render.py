"""Strokes -> ink (render_strokes), -> 28x28 (strokes_to_mnist), -> PNG (drawing_png)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from digits.data.strokes import densify, skeleton_strokes, stroke_width
from digits.inference.render import drawing_png, mnist_brush, render_strokes, strokes_to_mnist

DATA_DIR = Path(__file__).resolve().parents[3].parent / "shared/data/mnist"
needs_data = pytest.mark.usefixtures("mnist_dir")  # fails, never skips, without the data


def thickness(img: np.ndarray) -> float:
    """Mean stroke width of an ink image: ink mass per unit of skeleton length."""
    from skimage.morphology import skeletonize

    return float(img.sum()) / max(1, int(skeletonize(img > 0.5).sum()))


def test_stroke_renders_ink_along_its_path() -> None:
    ink = render_strokes([[(10, 10), (110, 10)]], brush=10)  # 110 x 10 box -> 20 x 1.8 px
    assert ink is not None and ink.shape == (2, 20)
    assert ink[0, 1:-1].min() > 0.99 and ink[1, 1:-1].min() > 0.8  # a partly covered 2nd row
    assert ink[0, 0] < ink[0, 10]  # round caps
    diag = render_strokes([[(0, 0), (100, 100)]], brush=5)
    assert diag is not None and diag.shape == (20, 20)
    assert np.diag(diag).min() > 0.9  # along the path
    assert diag[0, -1] == 0 and diag[-1, 0] == 0  # far corners stay empty


def test_round_caps_and_joins() -> None:
    ink = render_strokes([[(0, 0), (100, 0), (100, 100)]], brush=20, target=40)
    assert ink is not None
    assert ink[0, 0] < 0.5 and ink[0, -1] < 0.5  # round cap and round outer corner: not square
    assert ink[2, 4] > 0.5


def test_brush_scales_thickness_with_digit_size() -> None:
    stroke = [[(50, 20), (80, 60), (50, 150), (120, 160)]]
    thin = render_strokes(stroke, brush=6, target=80)
    thick = render_strokes(stroke, brush=18, target=80)
    big = render_strokes([[(2 * x, 2 * y) for x, y in stroke[0]]], brush=12, target=80)
    assert thin is not None and thick is not None and big is not None
    assert 2.2 < thickness(thick) / thickness(thin) < 3.6  # ~3x (bounding box grows a bit too)
    assert thickness(big) == pytest.approx(thickness(render_strokes(stroke, brush=6, target=80)), rel=0.1)


def test_dot_renders_as_disc() -> None:
    ink = render_strokes([[(50, 50)]], brush=20)
    assert ink is not None and ink.shape == (20, 20)
    assert ink[10, 10] == pytest.approx(1.0) and ink[0, 0] < 0.2
    out = strokes_to_mnist([[(50, 50)]], (280, 280), 20)
    assert out is not None and out.shape == (28, 28)
    np.testing.assert_allclose(ndimage.center_of_mass(out), (14, 14), atol=0.51)


def test_empty_gives_none() -> None:
    assert render_strokes([], brush=10) is None
    assert render_strokes([[], []], brush=10) is None
    assert strokes_to_mnist([], (280, 280), 10) is None


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="brush must be a positive finite number"):
        render_strokes([[(0, 0)]], brush=0)
    with pytest.raises(ValueError, match="stroke points must be finite numbers"):
        strokes_to_mnist([[(0, float("nan"))]], (280, 280), 10)


def test_strokes_to_mnist_is_mnist_shaped() -> None:
    out = strokes_to_mnist([[(140, 40), (140, 240)], [(100, 60), (140, 40)]], (280, 280), 16)
    assert out is not None and out.shape == (28, 28) and out.dtype == np.float32
    rows = np.flatnonzero(out.max(axis=1) > 0)
    assert rows[-1] - rows[0] + 1 == 20
    cy, cx = ndimage.center_of_mass(out)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5


def test_points_off_canvas_are_clamped() -> None:
    inside = strokes_to_mnist([[(10, 10), (10, 200)]], (280, 280), 30)
    outside = strokes_to_mnist([[(10, -100), (10, 10), (10, 200)]], (280, 280), 30)
    assert inside is not None and outside is not None
    assert np.abs(inside - outside).max() < 0.2


def _circle(cx: float, cy: float, r: float) -> list[list[tuple[float, float]]]:
    t = np.linspace(0, 2 * np.pi, 60)
    return [list(zip((cx + r * np.cos(t)).tolist(), (cy + r * np.sin(t)).tolist()))]


def test_brush_is_kept_within_mnist_stroke_widths() -> None:
    """A tiny 0 drawn with a thick brush keeps its hole, a hairline one is not a faint trace, and
    the same drawing at any size and brush gives the same 28x28 image once both are in range."""
    tiny_thick = strokes_to_mnist(_circle(40, 40, 20), (280, 280), 30)  # brush 0.75 of its size
    assert tiny_thick is not None and tiny_thick[14, 14] == 0.0  # the loop is open in the middle
    assert mnist_brush(np.array([[0.0, 0.0], [0.0, 100.0]]), 50.0) == pytest.approx(20.0)
    assert mnist_brush(np.array([[0.0, 0.0], [0.0, 100.0]]), 1.0) == pytest.approx(10.0)
    assert mnist_brush(np.array([[5.0, 5.0]]), 7.0) == 7.0  # a dot keeps the person's brush
    hairline = strokes_to_mnist(_circle(140, 140, 120), (280, 280), 2)
    assert hairline is not None and hairline.max() > 0.9
    middle = strokes_to_mnist(_circle(140, 140, 100), (280, 280), 100)
    assert middle is not None and np.abs(middle - tiny_thick).max() < 0.15


def test_drawing_png() -> None:
    data = drawing_png([[(20, 20), (300, 100)], [(50, 80)]], (400, 200), 12)
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG" and img.size == (280, 140)
    arr = np.asarray(img.convert("L"))
    assert arr[0, -1] == 255 and arr.min() < 50  # white background, dark ink
    small = Image.open(io.BytesIO(drawing_png([], (100, 50), 5)))
    assert small.size == (100, 50) and np.asarray(small.convert("L")).min() == 255


@needs_data
def test_skeleton_strokes_of_mnist_digits_reproduce_them() -> None:
    from digits.data.mnist import load_split

    images, _ = load_split(DATA_DIR, "test")
    corrs = []
    for img in images[:50]:
        strokes = [densify(s, 4.0) for s in skeleton_strokes(img, scale=10.0)]
        out = strokes_to_mnist(strokes, (280, 280), stroke_width(img) * 10.0)
        assert out is not None
        corrs.append(np.corrcoef(out.ravel(), img.ravel())[0, 1])
    assert np.mean(corrs) > 0.7, np.mean(corrs)


# ---- the rendering's cost is bounded whatever the points (recognizer.protocol bounds the points)


def _spy_segments(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    from digits.inference import render

    seen: list[int] = []
    real = render._coverage

    def coverage(w: int, h: int, starts: np.ndarray, dirs: np.ndarray, radius: float) -> np.ndarray:
        seen.append(len(starts))
        return real(w, h, starts, dirs, radius)

    monkeypatch.setattr(render, "_coverage", coverage)
    return seen


def test_a_hostile_scribble_reaches_the_distance_computation_thinned(monkeypatch: pytest.MonkeyPatch) -> None:
    from digits.inference.render import MAX_SEGMENTS

    seen = _spy_segments(monkeypatch)
    rng = np.random.default_rng(0)
    strokes = [rng.uniform(0, 4096, (10_000, 2)).tolist() for _ in range(2)]  # 20,000 points, ~40 px apart
    image = strokes_to_mnist(strokes, (4096, 4096), 230)
    assert image is not None and image.shape == (28, 28) and image.max() > 0.5
    assert seen and seen[0] <= MAX_SEGMENTS + 2 * len(strokes)


def test_real_drawings_render_as_without_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound only thins a path longer than MAX_SEGMENTS steps; a digit's is far shorter, so its
    28x28 image is exactly what it was before there was a bound (the model was trained on those)."""
    from digits.inference import render

    rng = np.random.default_rng(1)
    drawings = []
    for _ in range(40):
        strokes = []
        for _ in range(int(rng.integers(1, 6))):
            steps = rng.normal(0, 3, (int(rng.integers(1, 600)), 2)).cumsum(axis=0)
            strokes.append(np.clip(np.round(140 + steps.cumsum(axis=0) * 0.05 + rng.uniform(-60, 60, 2), 1), 0, 280).tolist())
        drawings.append(strokes)
    bounded = [strokes_to_mnist(d, (280, 280), 15.8) for d in drawings]
    bound = render.MAX_SEGMENTS
    seen = _spy_segments(monkeypatch)
    monkeypatch.setattr(render, "MAX_SEGMENTS", 10**9)
    for d, image in zip(drawings, bounded):
        unbounded = strokes_to_mnist(d, (280, 280), 15.8)
        assert image is not None and unbounded is not None and np.array_equal(image, unbounded)
    assert max(seen) < bound  # (they were all under the bound)


def test_points_as_lists_tuples_or_arrays_render_the_same_and_bad_points_are_refused() -> None:
    pts = [[10.5, 20.0], [60.0, 80.25], [120.0, 40.0]]
    ink = render_strokes([pts], brush=8)
    assert ink is not None
    for same in ([tuple(p) for p in pts], np.array(pts)):
        again = render_strokes([same], brush=8)
        assert again is not None and np.array_equal(ink, again)
    for bad, why in (
        ([[1.0, 2.0], [4.0]], "setting an array element with a sequence"),  # numpy's, on a ragged point
        ([["a", 1.0]], "could not convert string to float"),
        ([[1.0, float("nan")]], "stroke points must be finite numbers"),
    ):
        with pytest.raises(ValueError, match=why):
            render_strokes([bad], brush=8)
