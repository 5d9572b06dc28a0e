"""Writing styles that MNIST's writers rarely show, drawn onto the traced strokes of MNIST digits.

MNIST's writers (American) write a 1 as a bare bar, a 7 without a crossbar, a 4 often closed at the
top. Many European writers (the UJI dev writers of :mod:`digits.data.uji`) write a 1 with a long up-stroke
from the top going down-left (a "flag"), sometimes a base serif, or as a narrow loop (up and back
down close together); a 7 with a crossbar; a 4 open at the top; a 5 or a 7 in two strokes. Each style
here takes the strokes :func:`digits.data.strokes.skeleton_strokes` traces from an MNIST training digit
of the right class and adds what the style adds, in the order people draw it, keeping the rest of
the digit (its size, slant and wobble) as the MNIST writer drew it:

- ``one-flag`` (1): on a bar leaning at most 15 degrees down-left, a flag from the top going
  down-left (length 30-100% of the bar, 30-70 degrees below horizontal and 25-65 degrees off the
  bar, slightly bowed), drawn as the start of the same stroke or as a first stroke of
  its own; a quarter of them also get a base serif (a last stroke across the foot);
- ``one-loop`` (1): the bar written up and back down: an up-stroke beside the bar (7-18% of its
  length away at the widest) from 55-100% of the way down to the top, then the bar down;
- ``seven-cross`` (7): a crossbar across the stem 40-62% of the way down (30-55% of the height
  long, within 12 degrees of horizontal), a second stroke; 40% also get a down-tick (10-35% of the
  height) at the left end of the top bar;
- ``four-open`` (4): a 4 closed at the top opened (the arm's ink near the apex of the triangle
  lifted off, 12-20% of the height around it); an open one (most of MNIST's) opened wider: its arm
  turned out from the stem by 8-25 degrees about its corner with the bar;
- ``two-strokes`` (5, 7): the pen lifted at the sharpest corner, the second piece starting a
  little off where the first ended (a gap or an overshoot of up to 8% of the height); a 5's top bar
  is drawn last.

A style is a function ``(strokes, rng) -> strokes | None`` on dense polylines in source pixels (the
28x28 image, y down); None means it does not apply to that digit (a 1 that is not a plain bar, a 4
already open). :func:`styled_image` draws the result like a canvas drawing
(:func:`digits.data.canvas_style.draw_strokes`: sparse mouse sampling, random brush, size and place, the
serving preprocessing). :func:`digits.data.style_pool.build_pool` makes seeded, cached styled copies
of a set of digits for training (``--styles``); :mod:`digits.data.stroke_geometry` holds the geometry.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from digits.data import stroke_geometry as geo
from digits.data.canvas_style import MNIST_BOX, draw_strokes
from digits.data.stroke_geometry import Strokes
from digits.data.strokes import rdp, skeleton_strokes

STYLE_VERSION = 2  # bump when a style changes (invalidates cached pools)

StyleFn = Callable[[Strokes, np.random.Generator], "Strokes | None"]


# --------------------------------------------------------------------------- styles


def one_flag(strokes: Strokes, rng: np.random.Generator) -> Strokes | None:
    """A plain 1 with a flag from its top going down-left (part of the stroke or a first stroke),
    sometimes a base serif (a last stroke)."""
    bar = geo.plain_bar(strokes)
    if bar is None:
        return None
    d = bar.down
    lean = math.degrees(math.atan2(-d[0], d[1]))  # > 0: the bar runs down to the left
    if lean > 15.0:
        return None  # a flag on a slanting bar is a 7 (the UJI writers' flagged 1s lean -16..6 degrees)
    # the flag 30-70 degrees below horizontal (a flatter one is a 7's top bar) and 25-65 off the bar
    lo, hi = max(30.0, 25.0 - lean), min(70.0, 65.0 - lean)
    if lo > hi:
        return None
    beta = math.radians(rng.uniform(lo, hi))  # below horizontal, towards the left
    f = bar.length * rng.uniform(0.3, 1.0)  # the UJI writers' long flags: 0.75-1.0
    end = bar.top + f * np.array([-math.cos(beta), math.sin(beta)])
    normal = np.array([-math.sin(beta), -math.cos(beta)])  # the flag's upper side
    control = (end + bar.top) / 2 + normal * f * rng.uniform(-0.1, 0.2)
    flag = geo.bezier(end, control, bar.top)
    out = [geo.join(flag, bar.points)] if rng.uniform() < 0.65 else [flag, bar.points]
    if rng.uniform() < 0.25:
        width = bar.length * rng.uniform(0.3, 0.55)
        a = rng.uniform(0.35, 0.65)
        along = geo.rotate(np.array([1.0, 0.0]), rng.uniform(-6.0, 6.0))
        out.append(np.stack([bar.bottom - a * width * along, bar.bottom + (1 - a) * width * along]))
    return out


def one_loop(strokes: Strokes, rng: np.random.Generator) -> Strokes | None:
    """A plain 1 written as a narrow loop: up beside the bar from low down to the top, then down
    the bar; the up-stroke comes in from the other side, so the two cross where the loop closes."""
    bar = geo.plain_bar(strokes)
    if bar is None:
        return None
    t0 = rng.uniform(0.55, 1.0)  # where the loop closes, as a share of the way down
    width = bar.length * rng.uniform(0.07, 0.18)
    side = bar.left if rng.uniform() < 0.5 else -bar.left
    t = np.linspace(t0, 0.0, 16)
    bump = np.clip(np.sin(np.pi * t / t0), 0.0, None) ** 0.7
    up = bar.top + np.outer(t * bar.length, bar.down) + np.outer(bump * width, side)
    entry = up[0] - side * width * rng.uniform(0.3, 1.0) + bar.down * bar.length * rng.uniform(0.0, 0.08)
    up = np.concatenate([entry[None], up])
    return [geo.join(up, bar.points)]


def seven_cross(strokes: Strokes, rng: np.random.Generator) -> Strokes | None:
    """A 7 with a crossbar across its stem (a second stroke), sometimes a down-tick at the top
    bar's left end."""
    lo, hi = geo.bounds(strokes)
    height = float(hi[1] - lo[1])
    if height < 8.0:
        return None
    for _ in range(4):
        y = float(lo[1] + height * rng.uniform(0.4, 0.62))
        xs = geo.crossings(strokes, y)
        if len(xs) == 1:
            break
    else:
        return None
    length = height * rng.uniform(0.3, 0.55)
    centre = np.array([xs[0] + length * rng.uniform(-0.12, 0.12), y])
    along = geo.rotate(np.array([1.0, 0.0]), rng.uniform(-12.0, 6.0))  # negative: rising to the right
    out = [s.copy() for s in strokes]
    first = out[0]
    if rng.uniform() < 0.4 and first[0, 1] < lo[1] + 0.3 * height and first[0, 0] < (lo[0] + hi[0]) / 2:
        tick = first[0] + np.array([rng.uniform(-0.04, 0.04), rng.uniform(0.1, 0.35)]) * height
        out[0] = np.concatenate([tick[None], first])
    out.append(np.stack([centre - along * length / 2, centre + along * length / 2]))
    return out


def holes(strokes: Strokes, shape: tuple[int, int] = (28, 28)) -> list[np.ndarray]:
    """The enclosed regions of the strokes drawn as one-pixel lines: for each, its pixels (row, col)."""
    ink = np.zeros(shape, dtype=bool)
    for s in strokes:
        pts = np.floor(geo.dense(s, 0.25)).astype(int)
        ok = (pts[:, 0] >= 0) & (pts[:, 0] < shape[1]) & (pts[:, 1] >= 0) & (pts[:, 1] < shape[0])
        ink[pts[ok, 1], pts[ok, 0]] = True
    background, n = ndimage.label(~ink)  # 4-connected: a one-pixel 8-connected line encloses
    edge = set(np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]]).tolist())
    return [np.argwhere(background == k) for k in range(1, n + 1) if k not in edge]


def _stem(strokes: Strokes, height: float, right_of: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Ends (top, bottom) of a 4's stem: the longest near-vertical segment of the simplified strokes
    (at least 35% of the height) right of ``right_of``."""
    best: tuple[np.ndarray, np.ndarray] | None = None
    best_len = 0.0
    for s in strokes:
        simple = rdp(s, 1.0)
        for a, b in itertools.pairwise(simple):
            v = b - a
            n = float(np.hypot(*v))
            if n < 0.35 * height or abs(math.degrees(math.atan2(v[0], abs(v[1]) + 1e-9))) > 30:
                continue
            if (a[0] + b[0]) / 2 < right_of or n <= best_len:
                continue
            best, best_len = ((a, b) if a[1] < b[1] else (b, a)), n
    return best


def four_open(strokes: Strokes, rng: np.random.Generator) -> Strokes | None:
    """A 4 opened at the top: a closed one (arm, bar and stem enclose a triangle) gets the arm's ink
    near the triangle's apex, left of the stem, lifted off; an open one (most of MNIST's) gets its
    arm turned out from the stem about the arm's corner with the bar, 8-25 degrees."""
    lo, hi = geo.bounds(strokes)
    height = float(hi[1] - lo[1])
    if height < 8.0:
        return None
    found = holes(strokes)
    hole = max(found, key=len) if found else None
    if hole is not None and np.ptp(hole[:, 0]) + 1 >= 0.15 * height:
        return _four_cut(strokes, hole, height, rng)
    return _four_spread(strokes, height, float(lo[0] + hi[0]) / 2, rng)


def _four_cut(strokes: Strokes, hole: np.ndarray, height: float, rng: np.random.Generator) -> Strokes | None:
    rows, cols = hole[:, 0], hole[:, 1]
    stem = _stem(strokes, height, float(cols.mean() + 0.5))
    if stem is None:
        return None
    top, bottom = stem
    apex = np.array([float(cols[rows == rows.min()].mean()) + 0.5, float(rows.min()) - 0.5])
    radius = min(height * rng.uniform(0.12, 0.2), 0.6 * float(np.ptp(rows) + 1) + 1.0)
    v = (bottom - top) / float(np.hypot(*(bottom - top)))
    out: Strokes = []
    cut_total = 0
    for s in strokes:
        dense = geo.dense(s)
        rel = dense - top
        side = rel[:, 1] * v[0] - rel[:, 0] * v[1]  # > 0: left of the stem (screen, y down)
        cut = (np.hypot(*(dense - apex).T) < radius) & (side > 1.2)
        cut_total += int(cut.sum())
        out += _pieces(dense, cut)
    return out if cut_total >= 2 and out else None


def _pieces(dense: np.ndarray, cut: np.ndarray, min_points: int = 3) -> Strokes:
    """The runs of ``dense`` between the cut points (runs shorter than ``min_points`` dropped)."""
    out, start = [], None
    for j in range(len(dense) + 1):
        keep = j < len(dense) and not cut[j]
        if keep and start is None:
            start = j
        elif not keep and start is not None:
            if j - start >= min_points:
                out.append(dense[start:j])
            start = None
    return out


def _four_spread(strokes: Strokes, height: float, centre_x: float, rng: np.random.Generator) -> Strokes | None:
    stem = _stem(strokes, height, centre_x - 0.1 * height)
    if stem is None:
        return None
    top, bottom = stem

    def on_stem(s: np.ndarray) -> bool:
        dist, _ = geo.point_segment_distance(s, top, bottom)
        return bool((dist < 1.0).mean() > 0.5)

    others = [i for i, s in enumerate(strokes) if not on_stem(s)]
    if not others:
        return None
    k = max(others, key=lambda i: geo.length(strokes[i]))
    pts = geo.dense(strokes[k])
    j = _sharpest_corner(pts)
    if j is None:
        return None
    corner = pts[j]
    arm_first = pts[:j, 1].mean() < corner[1]
    arm = pts[: j + 1] if arm_first else pts[j:]
    if len(arm) < 4 or arm[:, 1].min() > corner[1] - 0.25 * height:
        return None  # no arm rising from the corner
    theta = rng.uniform(8.0, 25.0)
    tip = arm[0] if arm_first else arm[-1]
    turned = [corner + np.array([geo.rotate(p - corner, sign * theta) for p in arm]) for sign in (-1.0, 1.0)]
    tips = [t[0] if arm_first else t[-1] for t in turned]
    new = turned[int(np.argmin([t[0] for t in tips]))]  # the way that takes the arm's tip left
    if (new[0] if arm_first else new[-1])[0] >= tip[0]:
        return None
    pts = np.concatenate([new, pts[j + 1 :]]) if arm_first else np.concatenate([pts[:j], new])
    return [pts if i == k else s.copy() for i, s in enumerate(strokes)]


def _sharpest_corner(pts: np.ndarray) -> int | None:
    """Index into ``pts`` of its sharpest turn (at least 60 degrees, not in the first or last 15%
    of the stroke's length), or None."""
    simple = rdp(pts, 1.0)
    if len(simple) < 3:
        return None
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(simple, axis=0).T))])
    best, best_turn = None, 60.0
    for j in range(1, len(simple) - 1):
        if not 0.15 * arc[-1] <= arc[j] <= 0.85 * arc[-1]:
            continue
        u, v = simple[j] - simple[j - 1], simple[j + 1] - simple[j]
        turn = math.degrees(abs(math.atan2(u[0] * v[1] - u[1] * v[0], u @ v)))
        if turn >= best_turn:
            best, best_turn = j, turn
    if best is None:
        return None
    return int(np.argmin(np.hypot(*(pts - simple[best]).T)))


def two_strokes(strokes: Strokes, rng: np.random.Generator, *, bar_last: bool = False) -> Strokes | None:
    """The longest stroke written in two: the pen lifted at its sharpest corner and put down a
    little off (a gap or an overshoot); with ``bar_last`` the upper piece (a 5's top bar) last."""
    lo, hi = geo.bounds(strokes)
    height = float(hi[1] - lo[1])
    k = max(range(len(strokes)), key=lambda i: geo.length(strokes[i]))
    pts = geo.dense(strokes[k])
    j = _sharpest_corner(pts)
    if j is None or height < 8.0:
        return None
    first, second = pts[: j + 1], pts[j:].copy()
    v = second[min(4, len(second) - 1)] - second[0]
    n = float(np.hypot(*v))
    if n == 0:
        return None
    v /= n
    shift = geo.rotate(np.array([1.0, 0.0]), rng.uniform(0.0, 360.0)) * height * rng.uniform(0.02, 0.05)
    overshoot = height * rng.uniform(0.0, 0.06)
    second = np.concatenate([(second[0] - v * overshoot)[None], second]) + shift
    pieces = [first, second]
    if bar_last and first[:, 1].mean() < second[:, 1].mean():
        pieces = [second, first]
    return [s.copy() for s in strokes[:k]] + pieces + [s.copy() for s in strokes[k + 1 :]]


def _five_in_two(strokes: Strokes, rng: np.random.Generator) -> Strokes | None:
    return two_strokes(strokes, rng, bar_last=True)


@dataclass(frozen=True)
class Style:
    name: str
    digits: tuple[int, ...]
    make: Callable[[Strokes, np.random.Generator], Strokes | None]


STYLES: dict[str, Style] = {
    s.name: s
    for s in (
        Style("one-flag", (1,), one_flag),
        Style("one-loop", (1,), one_loop),
        Style("seven-cross", (7,), seven_cross),
        Style("four-open", (4,), four_open),
        Style("two-strokes", (5, 7), two_strokes),
    )
}
STYLE_IDS = {name: i for i, name in enumerate(STYLES)}

# Which styles a styled copy of each digit is drawn in, and how often (weights; a style that does
# not apply to a digit falls to the next one of its digit).
MIX: dict[int, tuple[tuple[str, float], ...]] = {
    1: (("one-flag", 0.65), ("one-loop", 0.35)),
    4: (("four-open", 1.0),),
    5: (("two-strokes", 1.0),),
    7: (("seven-cross", 0.75), ("two-strokes", 0.25)),
}


def apply_style(strokes: Strokes, label: int, style: str, rng: np.random.Generator) -> Strokes | None:
    """``style`` applied to a digit ``label``'s traced strokes, or None where it does not apply."""
    s = STYLES[style]
    if label not in s.digits:
        raise ValueError(f"style {style} is for digits {s.digits}, not {label}")
    make = _five_in_two if (style == "two-strokes" and label == 5) else s.make
    out = make(geo.arrays(strokes), rng)
    return None if out is None else _refit(out, geo.arrays(strokes))


def _refit(strokes: Strokes, like: Strokes) -> Strokes:
    """``strokes`` scaled about their box's centre so its longer side is that of ``like``'s box (a
    flag or a crossbar does not make the digit bigger than its writer drew it), at most MNIST's box."""
    lo, hi = geo.bounds(strokes)
    l0, h0 = geo.bounds(like)
    side, target = float((hi - lo).max()), min(float((h0 - l0).max()), MNIST_BOX)
    if side <= 0:
        return strokes
    k, c = target / side, (lo + hi) / 2
    return [(s - c) * k + c for s in strokes]


def traced(image: np.ndarray) -> Strokes:
    """A digit's strokes as canvas_style traces them (dense polylines, source px)."""
    return geo.arrays(skeleton_strokes(image, scale=1.0, tolerance=0.05))


def styled_strokes(image: np.ndarray, label: int, style: str, rng: np.random.Generator) -> Strokes | None:
    strokes = traced(image)
    return apply_style(strokes, label, style, rng) if strokes else None


def styled_image(image: np.ndarray, label: int, style: str, rng: np.random.Generator) -> np.ndarray | None:
    """(28, 28) float32 of MNIST ``image`` (a ``label``) written in ``style`` and drawn like a canvas
    drawing, or None where the style does not apply."""
    strokes = styled_strokes(image, label, style, rng)
    return None if strokes is None else draw_strokes(strokes, rng)
