"""Writing styles added to traced strokes: each style gives valid strokes of the intended shape,
they stay in the canvas when drawn, the drawn images are MNIST-framed, everything is seeded, and the
training pool is deterministic and cached."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from digits.data import stroke_geometry as geo
from digits.data import stroke_styles as ss
from digits.data import style_pool
from digits.data.canvas_style import place_strokes, sample_params
from digits.data.strokes import densify

needs_data = pytest.mark.usefixtures("mnist_dir")  # fails, never skips, without the data
SEEDS = range(60)


def dense(*points: tuple[float, float]) -> np.ndarray:
    return np.asarray(densify(points, 0.5), dtype=np.float64)


def bar() -> list[np.ndarray]:
    return [dense((14.0, 4.0), (13.0, 24.0))]  # a plain 1, leaning a little


def seven() -> list[np.ndarray]:
    return [dense((6.0, 5.0), (21.0, 5.0), (11.0, 24.0))]


def closed_four() -> list[np.ndarray]:
    return [dense((16.0, 4.0), (6.0, 17.0), (22.0, 17.0)), dense((16.0, 4.0), (16.0, 24.0))]


def open_four() -> list[np.ndarray]:
    return [dense((7.0, 4.0), (6.0, 17.0), (22.0, 17.0)), dense((17.0, 4.0), (17.0, 24.0))]


def five() -> list[np.ndarray]:
    arc = [(7 + 7 * math.sin(t), 18 - 6 * math.cos(t)) for t in np.linspace(0, 2.6, 12)]
    return [dense((20.0, 4.0), (8.0, 4.0), *arc)]


def valid(strokes: list[np.ndarray]) -> None:
    assert strokes and all(s.ndim == 2 and s.shape[1] == 2 and len(s) >= 2 for s in strokes)
    assert all(np.isfinite(s).all() for s in strokes)


def angle_deg(v: np.ndarray) -> float:
    return math.degrees(math.atan2(v[1], v[0]))


def test_a_flag_runs_from_the_top_down_left_at_an_angle_off_the_bar() -> None:
    forms = set()
    for seed in SEEDS:
        out = ss.one_flag(bar(), np.random.default_rng(seed))
        valid(out)
        b = geo.plain_bar(bar())
        assert b is not None
        flag_start = out[0][0]  # drawn first: from the flag's end up to the top
        v = flag_start - b.top
        length = float(np.hypot(*v))
        assert 0.29 * b.length <= length <= 1.01 * b.length
        below = angle_deg(np.array([-v[0], v[1]]))  # below horizontal, towards the left
        assert v[0] < 0 and 29.9 <= below <= 70.1
        off_bar = math.degrees(math.acos(float(v @ b.down) / length))
        assert 24.9 <= off_bar <= 65.1
        assert any(np.allclose(s[-1], b.bottom) for s in out)  # the bar is still drawn to its foot
        forms.add((len(out), len(out[-1]) == 2 and abs(out[-1][0, 1] - out[-1][1, 1]) < 0.2 * b.length))
    # part of the stroke or a first stroke; with and without a base serif (a flat last stroke)
    assert {n for n, _ in forms} >= {1, 2, 3} and any(serif for _, serif in forms)


def test_a_flag_is_only_added_to_a_plain_bar() -> None:
    rng = np.random.default_rng(0)
    assert ss.one_flag(seven(), rng) is None
    assert ss.one_flag([dense((4.0, 14.0), (24.0, 14.0))], rng) is None  # lying down: not a 1
    assert ss.one_flag([dense((18.0, 4.0), (10.0, 24.0))], rng) is None  # slanting: a flag would make a 7
    assert ss.one_loop(closed_four(), rng) is None


def test_a_looped_one_goes_up_beside_the_bar_and_comes_down_it() -> None:
    for seed in SEEDS:
        out = ss.one_loop(bar(), np.random.default_rng(seed))
        valid(out)
        assert len(out) == 1
        s = out[0]
        b = geo.plain_bar(bar())
        top = int(np.argmin(s[:, 1]))
        assert 5 < top < len(s) - 5  # up, then down
        rel = s[:top] - b.top
        off = np.abs(rel[:, 0] * b.down[1] - rel[:, 1] * b.down[0])  # distance from the bar's line
        assert 0.06 * b.length <= off.max() <= 0.19 * b.length  # a narrow loop
        assert np.allclose(s[-1], b.bottom)


def test_a_crossbar_crosses_the_stem_of_a_seven_about_halfway_down() -> None:
    ticks = 0
    for seed in SEEDS:
        out = ss.seven_cross(seven(), np.random.default_rng(seed))
        valid(out)
        assert len(out) == 2  # the 7, then the crossbar
        a, b = out[-1]
        assert abs(angle_deg(b - a)) <= 12.1
        y = (a[1] + b[1]) / 2
        assert 5 + 0.38 * 19 <= y <= 5 + 0.64 * 19
        stem_x = geo.crossings(out[:1], y)
        assert len(stem_x) == 1 and min(a[0], b[0]) < stem_x[0] < max(a[0], b[0])
        ticks += out[0][0, 1] > 5.5  # a down-tick before the top bar
    assert 10 <= ticks <= 40


def test_a_closed_four_is_opened_and_an_open_one_opened_wider() -> None:
    assert len(ss.holes(closed_four())) == 1 and not ss.holes(open_four())
    for seed in SEEDS:
        out = ss.four_open(closed_four(), np.random.default_rng(seed))
        valid(out)
        assert not ss.holes(out)  # the triangle is open at the top
        assert any(np.allclose(s[-1], (16.0, 24.0)) for s in out)  # the stem is whole
        wider = ss.four_open(open_four(), np.random.default_rng(seed))
        valid(wider)
        assert wider[0][0, 0] < 7.0 - 0.5  # the arm's tip moved away from the stem
        assert np.allclose(wider[0][-1], (22.0, 17.0)) and np.allclose(wider[1], open_four()[1])


def test_two_strokes_lift_the_pen_at_the_corner_and_a_fives_bar_comes_last() -> None:
    for seed in SEEDS:
        out = ss.two_strokes(seven(), np.random.default_rng(seed))
        valid(out)
        assert len(out) == 2 and out[0][:, 1].mean() < out[1][:, 1].mean()  # the bar, then the stem
        gap = float(np.hypot(*(out[1][0] - out[0][-1])))
        assert gap <= 0.12 * 19
        five_out = ss.apply_style(five(), 5, "two-strokes", np.random.default_rng(seed))
        valid(five_out)
        assert len(five_out) == 2 and np.ptp(five_out[-1][:, 1]) < 3  # the flat top bar, drawn last


def test_a_style_is_for_its_digits_only() -> None:
    with pytest.raises(ValueError, match="one-flag"):
        ss.apply_style(bar(), 7, "one-flag", np.random.default_rng(0))


@pytest.mark.parametrize(
    ("label", "style", "make"),
    [
        (1, "one-flag", bar),
        (1, "one-loop", bar),
        (7, "seven-cross", seven),
        (4, "four-open", closed_four),
        (7, "two-strokes", seven),
    ],
)
def test_styled_strokes_keep_the_digits_size_and_stay_in_the_canvas(label: int, style: str, make) -> None:
    for seed in range(20):
        rng = np.random.default_rng(seed)
        out = ss.apply_style(make(), label, style, rng)
        lo, hi = geo.bounds(out)
        l0, h0 = geo.bounds(make())
        assert float((hi - lo).max()) == pytest.approx(float((h0 - l0).max()))
        p = sample_params(rng)
        placed = np.concatenate([np.asarray(s) for s in place_strokes(out, p, rng)])
        assert (placed >= -1.0).all() and (placed[:, 0] <= p.canvas[0] + 1).all() and (placed[:, 1] <= p.canvas[1] + 1).all()


@pytest.fixture(scope="module")
def training_digits(mnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    from digits.data.mnist import load_split

    images, labels = load_split(mnist_dir, "train")
    pick = np.concatenate([np.flatnonzero(labels == d)[:40] for d in (1, 4, 5, 7)])
    return images[pick], labels[pick]


@needs_data
def test_mnist_digits_drawn_in_each_style_are_mnist_framed_and_seeded(training_digits) -> None:
    images, labels = training_digits
    applied = dict.fromkeys(ss.STYLES, 0)
    for i, (image, label) in enumerate(zip(images, labels)):
        for name, style in ss.STYLES.items():
            if label not in style.digits:
                continue
            out = ss.styled_image(image, int(label), name, np.random.default_rng(i))
            if out is None:
                continue
            applied[name] += 1
            assert out.shape == (28, 28) and out.dtype == np.float32
            assert out.min() >= 0.0 and out.max() <= 1.0 and out.max() > 0.1
            rows, cols = np.nonzero(out > 1e-3)
            assert max(np.ptp(rows), np.ptp(cols)) + 1 <= 21
            again = ss.styled_image(image, int(label), name, np.random.default_rng(i))
            np.testing.assert_array_equal(out, again)
    # many plain MNIST 1s take a flag (the upright ones) or a loop, nearly every 7 a crossbar; many 4s open wider
    assert applied["one-flag"] >= 16 and applied["one-loop"] >= 24
    assert applied["seven-cross"] >= 36 and applied["four-open"] >= 16 and applied["two-strokes"] >= 40


@needs_data
def test_the_pool_is_seeded_cached_and_styles_each_digit_as_its_own(training_digits, tmp_path: Path) -> None:
    images, labels = training_digits
    images, labels = images[::4], labels[::4]  # 40 digits: 10 each of 1, 4, 5, 7
    pool = style_pool.build_pool(images, labels, 5, variants=2, cache_dir=tmp_path, progress=False)
    assert len(pool) >= 60 and pool.images.shape == (len(pool), 28, 28) and pool.images.dtype == np.uint8
    names = list(ss.STYLES)
    for src, style in zip(pool.source, pool.style):
        assert labels[src] in ss.STYLES[names[style]].digits
    assert set(pool.counts()) == set(ss.STYLES)
    assert len(list(tmp_path.glob("styles-*.npz"))) == 1
    cached = style_pool.build_pool(images, labels, 5, variants=2, cache_dir=tmp_path, progress=False)
    fresh = style_pool.build_pool(images, labels, 5, variants=2, cache_dir=None, progress=False)
    for other in (cached, fresh):
        np.testing.assert_array_equal(other.images, pool.images)
        np.testing.assert_array_equal(other.source, pool.source)
    assert not np.array_equal(
        style_pool.build_pool(images, labels, 6, variants=2, cache_dir=None, progress=False).images[:5], pool.images[:5]
    )
