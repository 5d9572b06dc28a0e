"""Styled copies of a set of digits for training (:mod:`digits.training` ``--styles``): each 1, 4, 5
and 7 written in the styles of :mod:`digits.data.stroke_styles` (by weight, :data:`MIX`) and drawn
like a canvas drawing; seeded per copy and cached."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from digits.data.canvas_style import CACHE_DIR, FORMAT_VERSION, data_hash, draw_strokes
from digits.data.stroke_styles import MIX, STYLE_IDS, STYLE_VERSION, STYLES, apply_style, traced


def _choose(label: int, rng: np.random.Generator) -> list[str]:
    """The styles to try for a copy of a ``label``: one drawn by weight, then the others."""
    names = [n for n, _ in MIX[label]]
    w = np.array([w for _, w in MIX[label]], dtype=np.float64)
    first = names[int(rng.choice(len(names), p=w / w.sum()))]
    return [first] + [n for n in names if n != first]


@dataclass(frozen=True)
class Pool:
    """Styled copies: ``images`` uint8 (M, 28, 28), each of training image ``source`` (index into
    the images the pool was built from) in style ``style`` (index into :data:`STYLES`)."""

    images: np.ndarray
    source: np.ndarray
    style: np.ndarray

    def __len__(self) -> int:
        return len(self.source)

    def counts(self) -> dict[str, int]:
        names = list(STYLES)
        return {names[i]: int((self.style == i).sum()) for i in range(len(names)) if (self.style == i).any()}


def _pool_key(images: np.ndarray, labels: np.ndarray, seed: int, variants: int) -> str:
    mix = hashlib.sha256(repr(sorted(MIX.items())).encode()).hexdigest()[:8]
    lab = hashlib.sha256(np.ascontiguousarray(labels).tobytes()).hexdigest()[:8]
    return (
        f"styles-v{STYLE_VERSION}-canvas-v{FORMAT_VERSION}-seed{seed}-x{variants}-mix{mix}-"
        f"{data_hash(images)}-{lab}-n{len(images)}"
    )


def build_pool(
    images: np.ndarray,
    labels: np.ndarray,
    seed: int,
    *,
    variants: int = 2,
    cache_dir: Path | None = CACHE_DIR,
    progress: bool = True,
) -> Pool:
    """``variants`` styled copies of every image whose digit has styles (:data:`MIX`), each in a
    style drawn by weight (the next one where it does not apply; none where no style does), drawn
    like a canvas drawing. Copy ``v`` of image ``i`` uses ``np.random.default_rng([seed, v, i])``:
    deterministic; cached as ``.npz`` under ``cache_dir``."""
    images, labels = np.asarray(images), np.asarray(labels)
    final = None
    if cache_dir is not None:
        final = Path(cache_dir) / f"{_pool_key(images, labels, seed, variants)}.npz"
        if final.exists():
            with np.load(final) as z:
                return Pool(z["images"], z["source"], z["style"])
    out, source, style = [], [], []
    todo = np.flatnonzero(np.isin(labels, list(MIX)))
    for i in tqdm(todo, desc="styled copies", disable=not progress, unit="img"):
        strokes = traced(images[i])
        if not strokes:
            continue
        label = int(labels[i])
        for v in range(variants):
            rng = np.random.default_rng([seed, v, int(i)])
            for name in _choose(label, rng):
                styled = apply_style(strokes, label, name, rng)
                img = draw_strokes(styled, rng) if styled is not None else None
                if img is not None:
                    out.append(np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8))
                    source.append(int(i))
                    style.append(STYLE_IDS[name])
                    break
    pool = Pool(
        np.stack(out) if out else np.zeros((0, 28, 28), np.uint8),
        np.asarray(source, dtype=np.int64),
        np.asarray(style, dtype=np.int64),
    )
    if final is not None:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_suffix(".tmp.npz")
        with open(tmp, "wb") as f:
            np.savez_compressed(f, images=pool.images, source=pool.source, style=pool.style)
        tmp.replace(final)
    return pool


def describe(fraction: float, variants: int) -> str:
    """What the card says about the styled copies."""
    mix = "; ".join(f"{d}: " + ", ".join(f"{n} {w:.0%}" for n, w in MIX[d]) for d in sorted(MIX))
    return (
        f"{variants} styled copies of each MNIST training 1, 4, 5 and 7 (digits.data.stroke_styles v{STYLE_VERSION}: "
        f"the digit's traced strokes with a style added, drawn like a canvas drawing as digits.data.canvas_style "
        f"draws; styles by weight per digit, a style that does not apply falls to the next: {mix}); each such "
        f"digit of an epoch is replaced by one of its styled copies with probability {fraction}"
    )
