"""MNIST-style normalisation of an ink image (ink = 1.0, background = 0.0).

The MNIST recipe: crop to the ink, scale so the longer side is 20 px keeping the aspect ratio
(anti-aliased resampling), then place the result in a 28x28 frame with its centre of mass at
(14, 14) in array-index coordinates (row, col), clamped so that nothing is cut off.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

SIZE = 28  # output frame
BOX = 20  # longer side of the digit inside the frame
CENTRE = 14.0  # target centre of mass (index coordinates), as measured on MNIST itself
INK_EPS = 1e-3  # pixels at or below this are background when cropping
MIN_INK = 0.05  # below this peak value the image counts as empty


def ink_bbox(ink: np.ndarray, eps: float = INK_EPS) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of the pixels above ``eps`` (bottom/right exclusive), or None."""
    mask = ink > eps
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _com(img: np.ndarray) -> tuple[float, float]:
    """Centre of mass (row, col) in index coordinates; img must have positive total mass."""
    rows = img.sum(axis=1)
    total = float(rows.sum())
    cy = float(rows @ np.arange(img.shape[0], dtype=np.float32)) / total
    cx = float(img.sum(axis=0) @ np.arange(img.shape[1], dtype=np.float32)) / total
    return cy, cx


def mnist_normalize(ink: np.ndarray) -> np.ndarray | None:
    """Return the (28, 28) float32 MNIST-style image of ``ink``, or None if there is no ink."""
    ink = np.asarray(ink, dtype=np.float32)
    if ink.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {ink.shape}")
    box = ink_bbox(ink)  # NaN compares False: never ink
    if box is None:
        return None
    top, bottom, left, right = box
    crop = np.fmin(np.fmax(ink[top:bottom, left:right], 0.0), 1.0)  # fmax/fmin also map NaN to 0
    if float(crop.max()) < MIN_INK:
        return None
    h, w = crop.shape
    scale = BOX / max(h, w)
    # Scaled size: the longer side is exactly BOX, the other keeps the aspect ratio (at least 1 px).
    nh = BOX if h >= w else max(1, round(h * scale))
    nw = BOX if w >= h else max(1, round(w * scale))
    if (nh, nw) != (h, w):
        # Downscaling: BOX = area averaging (anti-aliased, crisp); upscaling: bilinear.
        resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
        resized = Image.fromarray(crop).resize((nw, nh), resample)
        crop = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
    if float(crop.sum()) <= 0.0:
        return None
    cy, cx = _com(crop)
    # Integer placement (as MNIST did): the centre of mass lands within 0.5 px of CENTRE per axis.
    top = min(max(round(CENTRE - cy), 0), SIZE - nh)
    left = min(max(round(CENTRE - cx), 0), SIZE - nw)
    out = np.zeros((SIZE, SIZE), dtype=np.float32)
    out[top : top + nh, left : left + nw] = crop
    return out
