"""Geometry of traced strokes (dense polylines in source pixels, y down) that the writing styles of
:mod:`digits.data.stroke_styles` work on: bounds, bars, crossings, curves and joins."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from digits.data.strokes import Polyline, densify

Strokes = list[np.ndarray]  # (n, 2) float64 polylines, source px, y down, in drawing order


def arrays(strokes: Sequence[Polyline]) -> Strokes:
    return [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes if len(s)]


def length(pts: np.ndarray) -> float:
    return float(np.hypot(*np.diff(pts, axis=0).T).sum()) if len(pts) > 1 else 0.0


def dense(pts: np.ndarray, step: float = 0.5) -> np.ndarray:
    return np.asarray(densify(pts, step), dtype=np.float64).reshape(-1, 2)


def bounds(strokes: Strokes) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) corners of the strokes' points."""
    pts = np.concatenate(strokes)
    return pts.min(axis=0), pts.max(axis=0)


def rotate(v: np.ndarray, deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


@dataclass(frozen=True)
class Bar:
    """A digit traced as one straight-ish stroke (a plain 1): its points from top to bottom."""

    points: np.ndarray
    top: np.ndarray
    bottom: np.ndarray

    @property
    def length(self) -> float:
        return float(np.hypot(*(self.bottom - self.top)))

    @property
    def down(self) -> np.ndarray:
        return (self.bottom - self.top) / self.length

    @property
    def left(self) -> np.ndarray:
        """Unit normal of the bar on its left side (screen, y down)."""
        d = self.down  # points down (y > 0): its left normal is (-dy, dx)
        return np.array([-d[1], d[0]])


def plain_bar(strokes: Strokes, *, max_lean_deg: float = 30.0, max_bow: float = 0.12, min_length: float = 8.0) -> Bar | None:
    """The bar of a digit traced as a single straight-ish stroke within ``max_lean_deg`` of vertical
    (its points at most ``max_bow`` of its length off the chord), else None."""
    if len(strokes) != 1 or len(strokes[0]) < 2:
        return None
    pts = strokes[0]
    if pts[0, 1] > pts[-1, 1]:
        pts = pts[::-1]
    top, bottom = pts[0], pts[-1]
    chord = bottom - top
    length = float(np.hypot(*chord))
    if length < min_length or abs(math.degrees(math.atan2(chord[0], chord[1]))) > max_lean_deg:
        return None
    off = np.abs(chord[0] * (pts[:, 1] - top[1]) - chord[1] * (pts[:, 0] - top[0])) / length
    if off.max() > max_bow * length:
        return None
    return Bar(pts.copy(), top.copy(), bottom.copy())


def bezier(a: np.ndarray, control: np.ndarray, b: np.ndarray, n: int = 12) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * a + 2 * (1 - t) * t * control + t**2 * b


def join(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """One polyline: ``first`` then ``second`` (a repeated meeting point dropped)."""
    if np.allclose(first[-1], second[0]):
        second = second[1:]
    return np.concatenate([first, second])


def crossings(strokes: Strokes, y: float) -> list[float]:
    """The x of every place where the strokes cross the horizontal line at ``y``."""
    xs = []
    for s in strokes:
        for a, b in itertools.pairwise(s):
            if (a[1] - y) * (b[1] - y) < 0 or (a[1] == y and b[1] != y):
                t = (y - a[1]) / (b[1] - a[1])
                xs.append(float(a[0] + t * (b[0] - a[0])))
    return xs


def point_segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance of points ``p`` (n, 2) to segment a-b, and where along it they project (t, unclipped)."""
    ab = b - a
    t = ((p - a) @ ab) / float(ab @ ab)
    q = a + np.clip(t, 0.0, 1.0)[:, None] * ab
    return np.hypot(*(p - q).T), t
