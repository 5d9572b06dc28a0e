"""MNIST digits re-rendered the way a web canvas draws them ("canvas style").

A scanned pen stroke and a canvas stroke look different: the canvas draws straight segments between
sparse mouse/touch samples with a round brush of one uniform width, at any size and place on the
canvas. To train and test on input that looks like what people draw, each MNIST digit is

1. thinned to its skeleton (loops blurred shut by grey ink kept open) and traced into polylines
   (:func:`digits.data.strokes.skeleton_strokes`),
2. resampled as sparse mouse sampling would (points at irregular arc-length steps of random mean
   spacing), simplified with Ramer-Douglas-Peucker of random tolerance, with a little jitter,
3. placed on a random canvas at a random size and position and redrawn with a round brush whose
   width is random relative to the digit's size,
4. run through the serving preprocessing :func:`digits.inference.render.strokes_to_mnist`.

Everything is deterministic given a numpy ``Generator``; :func:`build_dataset` gives every image its
own generator seeded by ``(seed, index)``, so results do not depend on chunking or resuming, and caches
the result as ``.npz`` under a (gitignored) cache directory keyed by seed, data hash and settings.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from digits.data.parallel import map_chunks
from digits.data.strokes import Polyline, rdp, skeleton_strokes
from digits.inference.render import strokes_to_mnist
from digits.paths import CACHE_DIR

FORMAT_VERSION = 4  # bump when the rendering recipe changes (invalidates caches)
MNIST_BOX = 20.0  # an MNIST digit's longer side in source pixels


@dataclass(frozen=True)
class Params:
    """How one digit is redrawn."""

    canvas: tuple[float, float]  # canvas (width, height) in CSS px
    size: float  # the digit's longer side on the canvas, px (the MNIST 20 px box maps to this)
    position: tuple[float, float]  # where the digit sits in the free space, 0..1 per axis
    brush_rel: float  # brush diameter / digit size (MNIST's own strokes are ~0.13; the page's brush
    # on a digit filling a quarter of the canvas is ~0.2, on a tiny one ~0.35)
    tolerance: float  # RDP tolerance in source (MNIST) pixels
    drop: float  # sparseness of the mouse sampling: mean step between points 0.5 + 10 * drop source px
    jitter: float  # std of positional jitter of the points, source pixels

    @property
    def brush(self) -> float:
        return max(1.0, self.brush_rel * self.size)


def sample_params(rng: np.random.Generator) -> Params:
    """Random drawing conditions, as varied as people's drawings (for training)."""
    side = float(rng.uniform(200, 600))
    aspect = float(np.exp(rng.uniform(-0.25, 0.25)))
    canvas = (side * aspect, side / aspect)
    size = float(min(canvas)) * float(np.exp(rng.uniform(math.log(0.12), math.log(0.95))))
    return Params(
        canvas=canvas,
        size=size,
        position=(float(rng.uniform()), float(rng.uniform())),
        brush_rel=float(
            np.exp(rng.uniform(math.log(0.05), math.log(0.35)))
            if rng.uniform() < 0.85
            else np.exp(rng.uniform(math.log(0.012), math.log(0.05)))
        ),
        tolerance=float(rng.uniform(0.2, 1.4)),
        drop=float(rng.uniform(0.0, 0.35)),
        jitter=float(rng.uniform(0.0, 0.25)),
    )


# The fixed grid used for evaluation sets: every combination appears equally often.
GRID_BRUSH = (0.03, 0.07, 0.12, 0.19, 0.28)  # hairline .. thick marker, relative to digit size
GRID_SIZE = (0.15, 0.45, 0.9)  # digit size / canvas side: tiny, medium, filling the canvas
GRID_POSITION = ((0.0, 0.0), (0.5, 0.5), (1.0, 1.0), (1.0, 0.0), (0.0, 1.0))  # corners and centre


def grid_params(index: int, rng: np.random.Generator) -> Params:
    """Evaluation conditions: brush width, size and position from a fixed grid cycled by ``index``
    (so each combination is equally represented); the sampling noise is drawn from ``rng``."""
    n_b, n_s, n_p = len(GRID_BRUSH), len(GRID_SIZE), len(GRID_POSITION)
    b = GRID_BRUSH[index % n_b]
    s = GRID_SIZE[(index // n_b) % n_s]
    p = GRID_POSITION[(index // (n_b * n_s)) % n_p]
    side = 280.0 if index % 2 == 0 else 400.0
    return Params(
        canvas=(side, side),
        size=side * s,
        position=p,
        brush_rel=b,
        tolerance=float(rng.uniform(0.3, 1.2)),
        drop=float(rng.uniform(0.0, 0.3)),
        jitter=float(rng.uniform(0.0, 0.2)),
    )


def _mouse_sample(pts: np.ndarray, p: Params, rng: np.random.Generator) -> np.ndarray:
    """Resample a dense path as a mouse would report it: points at irregular arc-length steps
    (``p.drop`` sets how sparse: mean step 0.5 + 10 * drop source px), ends kept, then RDP."""
    if len(pts) < 2:
        return pts
    d = np.hypot(*np.diff(pts, axis=0).T)
    arc = np.concatenate([[0.0], np.cumsum(d)])
    if arc[-1] <= 0:
        return pts[:1]
    mean_step = 0.5 + 10.0 * p.drop
    steps = rng.uniform(0.4, 1.6, size=int(arc[-1] / (0.4 * mean_step)) + 2) * mean_step
    at = np.cumsum(steps)
    at = np.concatenate([[0.0], at[at < arc[-1]], [arc[-1]]])
    sampled = np.stack([np.interp(at, arc, pts[:, 0]), np.interp(at, arc, pts[:, 1])], axis=1)
    return rdp(sampled, p.tolerance)


def _simplify(strokes: Sequence[Polyline], p: Params, rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for s in strokes:
        pts = _mouse_sample(np.asarray(s, dtype=np.float64).reshape(-1, 2), p, rng)
        if p.jitter > 0:
            pts = pts + rng.normal(0.0, p.jitter, pts.shape)
        out.append(pts)
    return out


def rerender_strokes(image: np.ndarray, p: Params, rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    """Canvas strokes (CSS px) of ``image`` redrawn under ``p``; [] if the image has no skeleton."""
    strokes = skeleton_strokes(image, scale=1.0, tolerance=0.05)  # ~ the pixel path; sampled below
    if not strokes:
        return []
    return place_strokes(strokes, p, rng)


def place_strokes(strokes: Sequence[Polyline], p: Params, rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    """Canvas strokes (CSS px) of dense polylines in source (MNIST) pixels, redrawn under ``p``:
    sparse mouse sampling, jitter, and the digit's 20 px box scaled to ``p.size`` at ``p.position``.
    The hook for strokes that were changed after tracing (:mod:`digits.data.stroke_styles`)."""
    arrays = _simplify(strokes, p, rng)
    k = p.size / MNIST_BOX  # canvas px per source px
    pts = np.concatenate(arrays) * k
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    pad = p.brush / 2
    extent = hi - lo + 2 * pad
    free = np.maximum(np.asarray(p.canvas) - extent, 0.0)
    offset = free * np.asarray(p.position) + pad - lo
    return [[(float(x), float(y)) for x, y in a * k + offset] for a in arrays]


def canvas_style(image: np.ndarray, rng: np.random.Generator, params: Params | None = None) -> np.ndarray:
    """The (28, 28) float32 image in [0, 1] of MNIST ``image`` redrawn like a canvas drawing.

    ``params`` defaults to :func:`sample_params` (rng). Images without a traceable skeleton are
    returned unchanged (scaled to [0, 1]).
    """
    p = params if params is not None else sample_params(rng)
    strokes = rerender_strokes(image, p, rng)
    out = strokes_to_mnist(strokes, p.canvas, p.brush) if strokes else None
    if out is None:
        img = np.asarray(image, dtype=np.float32)
        return img / 255.0 if img.max(initial=0) > 1.0 else img
    return out


def draw_strokes(strokes: Sequence[Polyline], rng: np.random.Generator, params: Params | None = None) -> np.ndarray | None:
    """The (28, 28) float32 image of dense source-pixel polylines drawn like a canvas drawing (as
    :func:`canvas_style` draws a traced digit), or None without ink."""
    p = params if params is not None else sample_params(rng)
    placed = place_strokes(strokes, p, rng)
    return strokes_to_mnist(placed, p.canvas, p.brush) if placed else None


# --------------------------------------------------------------------------- datasets


def data_hash(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()[:16]


def _key(images: np.ndarray, seed: int, mode: str) -> str:
    tag = f"v{FORMAT_VERSION}-{mode}-seed{seed}-{data_hash(images)}-n{len(images)}"
    return tag


def build_dataset(
    images: np.ndarray,
    seed: int,
    *,
    mode: str = "random",
    cache_dir: Path | None = CACHE_DIR,
    chunk: int = 1000,
    progress: bool = True,
    desc: str = "canvas-style",
    workers: int = 1,
) -> np.ndarray:
    """Canvas-style copies (uint8 (N, 28, 28), 255 = ink) of ``images`` (uint8 (N, 28, 28)).

    ``mode`` "random" draws :func:`sample_params` per image (training); "grid" cycles the evaluation
    grid (:func:`grid_params`). Image ``i`` uses ``np.random.default_rng([seed, i])``: the result is
    deterministic and independent of chunking. With a ``cache_dir`` the finished array is cached as
    ``<key>.npz``, and finished chunks are kept as they go so an interrupted build resumes.
    ``workers`` > 1 renders the chunks in that many processes (the same result).
    """
    if mode not in ("random", "grid"):
        raise ValueError(f"unknown mode {mode!r}")
    images = np.asarray(images)
    key = _key(images, seed, mode)
    final = part_dir = None
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        final = cache_dir / f"{key}.npz"
        if final.exists():
            with np.load(final) as z:
                return z["images"]
        part_dir = cache_dir / f"{key}.parts"
        part_dir.mkdir(parents=True, exist_ok=True)
    out = np.zeros(images.shape, dtype=np.uint8)
    bar = tqdm(total=len(images), desc=desc, disable=not progress, unit="img")
    todo: list[tuple[int, int]] = []
    for start in range(0, len(images), chunk):
        stop = min(start + chunk, len(images))
        part = part_dir / f"{start:07d}-{stop:07d}.npy" if part_dir is not None else None
        if part is not None and part.exists():
            out[start:stop] = np.load(part)
            bar.update(stop - start)
        else:
            todo.append((start, stop))

    def keep(start: int, stop: int, rendered: np.ndarray) -> None:
        out[start:stop] = rendered
        if part_dir is not None:
            part = part_dir / f"{start:07d}-{stop:07d}.npy"
            tmp = part.with_suffix(".tmp.npy")
            np.save(tmp, rendered)
            tmp.replace(part)
        bar.update(stop - start)

    # every image has its own generator: the chunks are independent
    calls = [(images[start:stop], seed, start, mode) for start, stop in todo]
    for (start, stop), rendered in zip(todo, map_chunks(_render_chunk, calls, workers)):
        keep(start, stop, rendered)
    bar.close()
    if final is not None and part_dir is not None:
        tmp = final.with_suffix(".tmp.npz")
        with open(tmp, "wb") as f:
            np.savez_compressed(f, images=out)
        tmp.replace(final)
        for part in part_dir.glob("*.npy"):
            part.unlink()
        part_dir.rmdir()
    return out


def _render_chunk(images: np.ndarray, seed: int, first: int, mode: str) -> np.ndarray:
    """Canvas-style copies of ``images``, the first being image ``first`` of the whole set."""
    out = np.zeros(images.shape, dtype=np.uint8)
    for k in range(len(images)):
        i = first + k
        rng = np.random.default_rng([seed, i])
        p = grid_params(i, rng) if mode == "grid" else sample_params(rng)
        out[k] = np.clip(np.rint(canvas_style(images[k], rng, p) * 255.0), 0, 255).astype(np.uint8)
    return out
