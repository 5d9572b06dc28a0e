"""Canvas strokes -> anti-aliased ink images (and the 28x28 MNIST-style image, and a PNG).

Strokes are polylines in canvas (CSS) pixels drawn with a round brush of diameter ``brush``:
round caps and joins, a lone point is a disc. The ink image is rendered analytically from the
distance to the nearest segment (exact round caps/joins, anti-aliased by the pixel footprint),
cropped to the ink box (stroke bounds +- brush/2) and scaled so its longer side is ``target`` px.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from digits.inference.normalize import mnist_normalize

Point = Sequence[float]
Stroke = Sequence[Point]

_CHUNK = 1 << 16  # max pixels x segments per distance block (bounds memory on huge inputs)
# At most about this many segments reach the distance computation (its cost is segments x pixels).
# Points are kept about one per 0.75 output px of arc length; a drawing whose path is longer than
# MAX_SEGMENTS x 0.75 px (~38 times the 20 px box side: far beyond any digit) is thinned with a
# longer step instead, so rendering costs at most ~MAX_SEGMENTS x 400 pixel-segment pairs whatever
# the points (recognizer.protocol's caps bound the points themselves).
MAX_SEGMENTS = 1024


def _arrays(strokes: Sequence[Stroke]) -> list[np.ndarray]:
    """Non-empty strokes as (n, 2) float64 arrays; raises ValueError on malformed/non-finite points."""
    out = [_array(s) for s in strokes if len(s)]
    if out and not np.isfinite(np.concatenate(out)).all():
        raise ValueError("stroke points must be finite numbers")
    return out


def _array(stroke: Stroke) -> np.ndarray:
    """One stroke's points as an (n, 2) float64 array. Lists of [x, y] pairs (what the workers get)
    are read with ``np.fromiter``: a third of ``np.asarray``'s time on a 20,000-point drawing."""
    if not isinstance(stroke, np.ndarray) and {len(p) for p in stroke} == {2}:
        try:
            return np.fromiter(itertools.chain.from_iterable(stroke), np.float64, count=2 * len(stroke)).reshape(-1, 2)
        except (TypeError, ValueError):
            pass  # not numbers: np.asarray says what is wrong
    return np.asarray(stroke, dtype=np.float64).reshape(-1, 2)


def _segments(all_pts: np.ndarray, lens: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Start points (S, 2) and direction vectors (S, 2) of all strokes' segments, float32.

    ``all_pts`` (N, 2): the strokes' points one stroke after another, ``lens`` their counts.

    Points are thinned to about one per ``step`` of arc length (chords of ``step`` px deviate
    from the path by ~step**2/(8*radius): invisible at step <= 1 px), or one per 1/MAX_SEGMENTS of
    the whole path when that is longer; a stroke's first and last points are always kept, and a
    lone point becomes a zero-length segment (a disc). S <= MAX_SEGMENTS + 2 x strokes.
    """
    ends = np.cumsum(lens)
    pts = all_pts
    d = pts[1:] - pts[:-1]
    seg = np.sqrt((d * d).sum(axis=1))
    seg[ends[:-1] - 1] = 0.0  # no length between strokes
    arc = np.concatenate(([0.0], seg.cumsum()))
    step = max(step, float(arc[-1]) / MAX_SEGMENTS)
    bins = arc // step
    keep = np.empty(len(pts), dtype=bool)
    keep[0] = True
    keep[1:] = bins[1:] != bins[:-1]
    keep[ends - lens] = keep[ends - 1] = True
    stroke_id = np.repeat(np.arange(len(lens)), lens)[keep]
    pts = pts[keep]
    same = stroke_id[1:] == stroke_id[:-1]
    starts, dirs = pts[:-1][same], (pts[1:] - pts[:-1])[same]
    if (lens == 1).any():  # dots
        dots = all_pts[(ends - 1)[lens == 1]]
        starts, dirs = np.concatenate([starts, dots]), np.concatenate([dirs, np.zeros_like(dots)])
    return starts.astype(np.float32), dirs.astype(np.float32)


def _decimate(pts: np.ndarray, step: float) -> np.ndarray:
    """One stroke's points thinned to about one per ``step`` of arc length (ends kept)."""
    if len(pts) <= 2:
        return pts
    d = pts[1:] - pts[:-1]
    bins = np.sqrt((d * d).sum(axis=1)).cumsum() // step
    keep = np.ones(len(pts), dtype=bool)
    keep[1:-1] = bins[1:] != bins[:-1]
    return pts[keep]


@functools.lru_cache(maxsize=64)
def _grid(w: int, h: int) -> np.ndarray:
    """(4, N) rows [x, y, 1, x^2 + y^2] of the pixel centres of an (h, w) image, row-major,
    relative to the image centre (small magnitudes keep float32 sums accurate)."""
    x = np.tile(np.arange(w, dtype=np.float64) + 0.5 - w / 2, h)
    y = np.repeat(np.arange(h, dtype=np.float64) + 0.5 - h / 2, w)
    return np.stack([x, y, np.ones_like(x), x * x + y * y]).astype(np.float32)


def _coverage(w: int, h: int, starts: np.ndarray, dirs: np.ndarray, radius: float) -> np.ndarray:
    """(h, w) float32 ink coverage of capsules of ``radius`` around the segments (pixel units).

    For pixel p and segment a + t*u (0 <= t <= 1): q = (p-a).u, t = clip(q/|u|^2), and
    |p - a - t*u|^2 = |p-a|^2 + t*(t*|u|^2 - 2q). Both q and |p-a|^2 are linear in the grid's
    rows [x, y, 1, x^2+y^2], so one matrix product yields them for all segments and pixels.
    Arrays are (segments, pixels): reductions over axis 0 are the fast ones in numpy.
    """
    grid = _grid(w, h)
    a = starts - np.array([w / 2, h / 2], dtype=np.float32)
    len2 = (dirs * dirs).sum(axis=1)
    inv = np.divide(1.0, len2, out=np.zeros_like(len2), where=len2 > 0)[:, None]
    len2 = len2[:, None]
    best = None
    chunk = max(1, _CHUNK // (w * h))
    for i in range(0, len(a), chunk):
        ai, ui = a[i : i + chunk], dirs[i : i + chunk]
        n = len(ai)
        coef = np.empty((2 * n, 4), dtype=np.float32)
        coef[:n, :2] = ui  # q = x*ux + y*uy - a.u
        coef[:n, 2] = -(ai * ui).sum(axis=1)
        coef[:n, 3] = 0.0
        coef[n:, :2] = -2.0 * ai  # |p-a|^2 = x^2+y^2 - 2 x*ax - 2 y*ay + |a|^2
        coef[n:, 2] = (ai * ai).sum(axis=1)
        coef[n:, 3] = 1.0
        res = coef @ grid
        q, d2 = res[:n], res[n:]
        t = q * inv[i : i + chunk]
        t.clip(0.0, 1.0, out=t)
        q *= -2.0
        q += t * len2[i : i + chunk]
        q *= t
        d2 += q
        d2 = d2.min(axis=0)
        best = d2 if best is None else np.minimum(best, d2)
    assert best is not None  # callers pass at least one segment
    dist = np.sqrt(best.clip(0.0, None))
    # Overlap of the stroke's cross-section [-r, r] with the pixel's footprint [d-0.5, d+0.5].
    cov = np.minimum(dist + 0.5, radius)
    cov -= np.maximum(dist - 0.5, -radius)
    return cov.clip(0.0, 1.0, out=cov).reshape(h, w)


def _render(pts: np.ndarray, lens: np.ndarray, brush: float, target: int) -> np.ndarray:
    """Ink of the strokes whose points are ``pts`` (concatenated, ``lens`` per stroke; not empty)."""
    if not brush > 0 or not math.isfinite(brush):
        raise ValueError("brush must be a positive finite number")
    lo = pts.min(axis=0) - brush / 2
    extent = pts.max(axis=0) + brush / 2 - lo
    k = target / float(extent.max())  # canvas px -> output px
    w, h = (max(1, math.ceil(e * k - 1e-6)) for e in extent.tolist())
    starts, dirs = _segments((pts - lo) * k, lens, 0.75)
    return _coverage(w, h, starts, dirs, brush * k / 2)


def _concat(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All points one stroke after another, and each stroke's point count."""
    return np.concatenate(arrays), np.array([len(a) for a in arrays])


def render_strokes(strokes: Sequence[Stroke], brush: float, *, target: int = 20) -> np.ndarray | None:
    """Anti-aliased ink image of ``strokes`` cropped to the ink box, longer side ``target`` px.

    Returns a float32 (h, w) array in [0, 1] (ink = 1), or None when there are no points.
    """
    arrays = _arrays(strokes)
    return _render(*_concat(arrays), brush, target) if arrays else None


def _clip_to_canvas(strokes: Sequence[Stroke], canvas: tuple[float, float]) -> list[np.ndarray]:
    """Strokes as arrays with points clamped to the canvas (ink outside it is not visible)."""
    hi = np.array(canvas, dtype=np.float64)
    return [np.minimum(np.maximum(a, 0.0), hi) for a in _arrays(strokes)]


def strokes_to_mnist(strokes: Sequence[Stroke], canvas: tuple[float, float], brush: float) -> np.ndarray | None:
    """The (28, 28) float32 MNIST-style image of a canvas drawing, or None if it has no ink.

    The single preprocessing implementation shared by serving, training and evaluation. The
    person's brush is kept within :data:`STROKE_RANGE` of the drawing's size (:func:`mnist_brush`).
    """
    arrays = _clip_to_canvas(strokes, canvas)
    if not arrays:
        return None
    pts, lens = _concat(arrays)
    return mnist_normalize(_render(pts, lens, mnist_brush(pts, brush), 20))


def strokes_json_to_mnist_bytes(drawings: Sequence[tuple[str, float, float, float]]) -> bytes:
    """:func:`strokes_to_mnist` of many drawings, each given as (its strokes as JSON text, canvas
    width, canvas height, brush): 784 bytes a drawing (255 = ink, rounded as the workers store an
    image; all zeros for a drawing without ink), one drawing after another.

    Made for process pools (the export's): the JSON text goes to a worker process as it is (one string
    to pickle) and is parsed there, in parallel, instead of parsed in the sender and pickled as lists
    of floats.
    """
    images = np.zeros((len(drawings), 28, 28), dtype=np.float32)
    for i, (strokes_json, width, height, brush) in enumerate(drawings):
        image = strokes_to_mnist(json.loads(strokes_json), (width, height), brush)
        if image is not None:
            images[i] = image
    # the same rounding, element for element, as worker.pipeline.to_bytes28
    return np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8).tobytes()


# Brush diameter / size of the drawing (longer side of its centre lines). MNIST's own strokes
# (ink mass / skeleton length, over the ink box less that width; first 4,000 training images)
# are 0.16 at the median, 0.10 at the 5th and 0.20 at the 75th percentile. A tiny digit drawn with
# the page's brush is
# 0.3-0.4 (loops fill up, a 1 with a flag becomes a blob); a hairline on a big canvas is 0.02
# (a faint trace after scaling). The strokes give the centre lines exactly, so the drawing is
# rendered at a width inside this range instead: what the person drew, in MNIST's pen.
STROKE_RANGE = (0.10, 0.20)


def mnist_brush(pts: np.ndarray, brush: float) -> float:
    """``brush`` clipped to :data:`STROKE_RANGE` times the size of the drawing whose points are
    ``pts`` (N, 2) (a lone dot keeps it)."""
    if not len(pts) or not brush > 0 or not math.isfinite(brush):
        return brush  # _render rejects a bad brush; nothing to scale without points
    size = float((pts.max(axis=0) - pts.min(axis=0)).max())
    if size <= 0:
        return brush
    lo, hi = STROKE_RANGE
    return min(max(brush, lo * size), hi * size)


def drawing_png(strokes: Sequence[Stroke], canvas: tuple[float, float], brush: float, *, max_side: int = 280) -> bytes:
    """PNG bytes of the whole canvas (aspect kept, longer side <= max_side): dark ink on white."""
    cw, ch = float(canvas[0]), float(canvas[1])
    if not (cw > 0 and ch > 0 and math.isfinite(cw) and math.isfinite(ch)):
        raise ValueError("canvas size must be positive")
    scale = min(1.0, max_side / max(cw, ch))
    w, h = max(1, round(cw * scale)), max(1, round(ch * scale))
    ss = 4  # supersampling factor
    img = Image.new("L", (w * ss, h * ss), 0)
    draw = ImageDraw.Draw(img)
    k = scale * ss
    width = max(1.0, brush * k)
    r = width / 2
    for pts in _clip_to_canvas(strokes, (cw, ch)):
        pts = _decimate(pts * k, ss / 2)
        flat = [tuple(p) for p in pts.tolist()]
        if len(flat) > 1:
            draw.line(flat, fill=255, width=max(1, round(width)))
        for x, y in flat:  # round caps and joins
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    img = Image.eval(img.reduce(ss), lambda v: 255 - v)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
