"""Canvas-style re-rendering of MNIST digits: deterministic, MNIST-framed, cached and resumable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from digits.data.canvas_style import Params, build_dataset, canvas_style, grid_params, rerender_strokes, sample_params

DATA_DIR = Path(__file__).resolve().parents[3].parent / "shared/data/mnist"


def synthetic_digits(n: int = 6) -> np.ndarray:
    """A few simple digit-like shapes (ring, bar, L) so the test runs without MNIST."""
    out = np.zeros((n, 28, 28), dtype=np.uint8)
    yy, xx = np.mgrid[:28, :28]
    for i in range(n):
        if i % 3 == 0:
            d = np.hypot(yy - 14, (xx - 14) * 1.4)
            out[i][(d > 6) & (d < 9)] = 255
        elif i % 3 == 1:
            out[i, 4:24, 12 + i % 2 : 15 + i % 2] = 255
        else:
            out[i, 4:24, 8:11] = 255
            out[i, 21:24, 8:20] = 255
    return out


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    if (DATA_DIR / "t10k-images-idx3-ubyte.gz").exists():
        from digits.data.mnist import load_split

        return load_split(DATA_DIR, "test")[0][:12]
    return synthetic_digits(12)


def test_deterministic_given_the_generator(digits: np.ndarray) -> None:
    a = canvas_style(digits[0], np.random.default_rng(5))
    b = canvas_style(digits[0], np.random.default_rng(5))
    c = canvas_style(digits[0], np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (28, 28) and a.dtype == np.float32
    assert not np.array_equal(a, c)


def test_output_is_mnist_framed(digits: np.ndarray) -> None:
    for i, img in enumerate(digits):
        out = canvas_style(img, np.random.default_rng(i))
        assert out.min() >= 0.0 and out.max() <= 1.0 and out.max() > 0.1  # hairline brushes are faint
        rows, cols = np.nonzero(out > 1e-3)
        assert max(np.ptp(rows), np.ptp(cols)) + 1 <= 21  # the longer side fits MNIST's 20 px box
        total = out.sum()
        cy = (out.sum(1) * np.arange(28)).sum() / total
        cx = (out.sum(0) * np.arange(28)).sum() / total
        assert abs(cy - 14) < 1.5 and abs(cx - 14) < 1.5


def test_strokes_stay_on_the_canvas_with_the_requested_size(digits: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    for i in range(20):
        p = grid_params(i, rng) if i % 2 else sample_params(rng)
        strokes = rerender_strokes(digits[i % len(digits)], p, rng)
        pts = np.concatenate([np.asarray(s) for s in strokes])
        assert (pts >= -1e-6).all() and (pts <= np.asarray(p.canvas) + 1e-6).all()
        assert np.ptp(pts, axis=0).max() <= p.size * 1.25  # the 20 px box maps to p.size (+ jitter)


def test_grid_cycles_brush_size_and_position() -> None:
    rng = np.random.default_rng(0)
    ps = [grid_params(i, rng) for i in range(75)]
    assert len({p.brush_rel for p in ps}) == 5
    assert len({round(p.size / p.canvas[0], 3) for p in ps}) == 3
    assert len({p.position for p in ps}) == 5


def test_blank_image_is_returned_unchanged() -> None:
    blank = np.zeros((28, 28), dtype=np.uint8)
    assert canvas_style(blank, np.random.default_rng(0)).max() == 0.0


def test_thick_brush_gives_more_ink_than_thin(digits: np.ndarray) -> None:
    base = {"canvas": (280.0, 280.0), "size": 200.0, "position": (0.5, 0.5), "tolerance": 0.5, "drop": 0.0, "jitter": 0.0}
    thin = canvas_style(digits[0], np.random.default_rng(0), Params(brush_rel=0.05, **base))
    thick = canvas_style(digits[0], np.random.default_rng(0), Params(brush_rel=0.25, **base))
    assert thick.sum() > 1.5 * thin.sum()


def test_build_dataset_is_cached_and_resumable(digits: np.ndarray, tmp_path: Path) -> None:
    imgs = digits[:6]
    ref = build_dataset(imgs, 3, cache_dir=None, progress=False)
    assert ref.shape == imgs.shape and ref.dtype == np.uint8
    # chunking and caching do not change the result
    a = build_dataset(imgs, 3, cache_dir=tmp_path, chunk=4, progress=False)
    np.testing.assert_array_equal(a, ref)
    cached = list(tmp_path.glob("*.npz"))
    assert len(cached) == 1 and not list(tmp_path.glob("*.parts"))
    np.testing.assert_array_equal(build_dataset(imgs, 3, cache_dir=tmp_path, progress=False), ref)
    # an interrupted build: one finished chunk on disk is reused
    cached[0].unlink()
    parts = tmp_path / (cached[0].stem + ".parts")
    parts.mkdir()
    marker = np.full((4, 28, 28), 7, dtype=np.uint8)
    np.save(parts / "0000000-0000004.npy", marker)
    resumed = build_dataset(imgs, 3, cache_dir=tmp_path, chunk=4, progress=False)
    np.testing.assert_array_equal(resumed[:4], marker)
    np.testing.assert_array_equal(resumed[4:], ref[4:])
    # grid mode and another seed differ
    assert not np.array_equal(build_dataset(imgs, 4, cache_dir=None, progress=False), ref)
    assert not np.array_equal(build_dataset(imgs, 3, mode="grid", cache_dir=None, progress=False), ref)


def test_build_dataset_in_several_processes_gives_the_same_copies(digits: np.ndarray, tmp_path: Path) -> None:
    imgs = digits[:6]
    ref = build_dataset(imgs, 3, cache_dir=None, progress=False)
    np.testing.assert_array_equal(build_dataset(imgs, 3, cache_dir=None, chunk=2, workers=2, progress=False), ref)
    np.testing.assert_array_equal(build_dataset(imgs, 3, cache_dir=tmp_path, chunk=2, workers=2, progress=False), ref)
    assert len(list(tmp_path.glob("*.npz"))) == 1
