"""Real pen-drawn digits: UJI Pen Characters v2, writers W01-W20 (``../shared/data/uji-pen``).

Each digit is a full pen trajectory in tablet units. To read it as the service reads a drawing, it
is put on the page's pad as a person would draw it there: fitted to the 280x280 canvas with its
aspect ratio kept (the longer side spanning :data:`FILL` of the pad, centred), coordinates rounded
to 0.1 CSS px and repeated points dropped as the page's pointer handler does, drawn with the page's
brush (the page's ``pad.js``: canvas width x 18/320), then rendered by :func:`digits.inference.render.strokes_to_mnist`,
the function the workers use for strokes sent over the WebSocket.

The writers are the unit of independence: :func:`writer_split` and :func:`writer_folds` keep all of
a writer's digits on one side, for leave-writers-out use.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digits.inference.render import strokes_to_mnist
from digits.paths import UJI_DIR

DEFAULT_DIR = UJI_DIR
DEV_FILE = "uji-digits-dev.json"
CANVAS = (280.0, 280.0)  # the page's pad, CSS px
BRUSH = math.floor(CANVAS[0] * 18 / 320 * 10 + 0.5) / 10  # pad.js: round1(width * BRUSH_RATIO) = 15.8
FILL = 0.7  # the drawing's longer side / the pad's side: a digit drawn to fill most of the pad

Strokes = list[list[list[float]]]


@dataclass(frozen=True)
class PenDigit:
    label: int
    writer: str  # "W01".."W20"
    sample: str  # e.g. "trn_UJI_W01-01"
    strokes: tuple[tuple[tuple[float, float], ...], ...]  # tablet units, y down


def load_dev(uji_dir: Path = DEFAULT_DIR) -> list[PenDigit]:
    """The 400 dev digits (20 writers x 10 digits x 2), in file order."""
    path = Path(uji_dir) / DEV_FILE
    if not path.exists():
        raise FileNotFoundError(f"UJI pen digits expected in {path}")
    out = []
    for row in json.loads(path.read_text()):
        label = int(row["label"])
        if not 0 <= label <= 9:
            raise ValueError(f"{row.get('sample')}: label {label} out of range")
        strokes = tuple(tuple((float(x), float(y)) for x, y in s) for s in row["strokes"] if len(s))
        if not strokes:
            raise ValueError(f"{row.get('sample')}: no points")
        out.append(PenDigit(label, str(row["writer"]), str(row["sample"]), strokes))
    return out


def fit_to_canvas(
    strokes: Sequence[Sequence[Sequence[float]]], canvas: tuple[float, float] = CANVAS, fill: float = FILL
) -> Strokes:
    """Strokes in canvas CSS px: scaled (aspect kept) so the longer side of their box is ``fill`` of
    the canvas's shorter side, centred, rounded to 0.1 px, with repeated points dropped."""
    pts = np.concatenate([np.asarray(s, np.float64).reshape(-1, 2) for s in strokes])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    extent = float((hi - lo).max())
    k = fill * min(canvas) / extent if extent > 0 else 1.0
    offset = np.asarray(canvas, np.float64) / 2 - (lo + hi) / 2 * k
    out: Strokes = []
    for s in strokes:
        placed = np.round(np.asarray(s, np.float64).reshape(-1, 2) * k + offset, 1)
        placed = np.clip(placed, 0.0, np.asarray(canvas, np.float64))
        keep = np.ones(len(placed), bool)
        keep[1:] = (placed[1:] != placed[:-1]).any(axis=1)  # the pen resting: one point, as the page keeps it
        out.append(placed[keep].tolist())
    return out


def render(digits: Sequence[PenDigit], canvas: tuple[float, float] = CANVAS, brush: float = BRUSH) -> np.ndarray:
    """(N, 28, 28) float32: what the model sees for each digit drawn on the page."""
    images = []
    for d in digits:
        image = strokes_to_mnist(fit_to_canvas(d.strokes, canvas), canvas, brush)
        if image is None:
            raise ValueError(f"{d.sample}: no ink after fitting")
        images.append(image)
    return np.stack(images) if images else np.zeros((0, 28, 28), np.float32)


def labels(digits: Sequence[PenDigit]) -> np.ndarray:
    return np.array([d.label for d in digits], dtype=np.int64)


def writers(digits: Sequence[PenDigit]) -> list[str]:
    """The writers, sorted."""
    return sorted({d.writer for d in digits})


def writer_split(digits: Sequence[PenDigit], held_out: Iterable[str]) -> tuple[list[PenDigit], list[PenDigit]]:
    """(digits of the other writers, digits of the ``held_out`` writers)."""
    out = set(held_out)
    unknown = out - set(writers(digits))
    if unknown:
        raise ValueError(f"no digits of writers {sorted(unknown)}")
    return [d for d in digits if d.writer not in out], [d for d in digits if d.writer in out]


def writer_folds(digits: Sequence[PenDigit], k: int, seed: int = 0) -> list[tuple[list[PenDigit], list[PenDigit]]]:
    """``k`` leave-writers-out folds (train, held out): each writer is held out in exactly one fold,
    writers dealt to folds in a ``seed``-shuffled order."""
    names = writers(digits)
    if not 2 <= k <= len(names):
        raise ValueError(f"k must be between 2 and the number of writers ({len(names)})")
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    return [writer_split(digits, order[f::k]) for f in range(k)]
