"""Training digits as the upload path hands them to the model.

An uploaded image reaches the model through :func:`digits.inference.images.image_to_mnist` (find the ink, crop,
scale into the 20 px box, centre by mass): a digit photographed on ruled paper, or a 28 px crop scaled
up and back, comes out a little different from the MNIST image it was made of, and a model that never
saw such copies reads them worse (a fine-tune on canvas-style data alone lost 0.4 points on 112 px
uploads). Here each training image is made into an upload by one of the upload set's recipes
(:data:`digits.data.uploadset.VARIANTS`, drawn at random per image) and run through the service's own upload
preprocessing; the result stands in for the image in training as a canvas-style copy does.

Only training-split images, with a seed of their own (the upload set is built from the validation
split, for measuring). Every image has its own generator, seeded by (seed, copy, index): the result
does not depend on chunking or on the number of processes; it is cached as ``.npz`` like the
canvas-style copies.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from digits.data.canvas_style import CACHE_DIR, data_hash
from digits.data.parallel import map_chunks
from digits.data.uploadset import VARIANTS, make_upload
from digits.inference.images import BadImage, decode_upload, image_to_mnist

log = logging.getLogger(__name__)

SEED = 41_017  # training renditions (the upload test set has uploadset.SEED)
FORMAT_VERSION = 1  # bump when the recipes or the upload preprocessing change (invalidates caches)


def _key(images: np.ndarray, labels: np.ndarray, seed: int, copy: int) -> str:
    lab = hashlib.sha256(np.ascontiguousarray(labels).tobytes()).hexdigest()[:8]
    names = hashlib.sha256(",".join(v.name for v in VARIANTS).encode()).hexdigest()[:8]
    return f"uploads-v{FORMAT_VERSION}-{names}-seed{seed}-copy{copy}-{data_hash(images)}-{lab}-n{len(images)}"


def _render_chunk(images: np.ndarray, labels: np.ndarray, first: int, seed: int, copy: int) -> tuple[np.ndarray, int]:
    """(renditions, how many were refused); a refused upload keeps the image as it was."""
    out = images.copy()
    refused = 0
    for k in range(len(images)):
        i = first + k
        rng = np.random.default_rng([seed, copy, i])
        variant = VARIANTS[int(rng.integers(len(VARIANTS)))]
        upload = make_upload(images[k], int(labels[k]), i, variant, seed=seed + 7919 * copy)
        try:
            out[k] = np.clip(np.rint(image_to_mnist(decode_upload(upload.data)) * 255.0), 0, 255).astype(np.uint8)
        except BadImage:
            refused += 1
    return out, refused


def build(
    images: np.ndarray,
    labels: np.ndarray,
    seed: int = SEED,
    *,
    copies: int = 1,
    cache_dir: Path | None = CACHE_DIR,
    workers: int = 1,
    chunk: int = 500,
    progress: bool = True,
) -> np.ndarray:
    """uint8 (copies, N, 28, 28): each of ``images`` (uint8 (N, 28, 28), 255 = ink) uploaded and read back."""
    images, labels = np.asarray(images), np.asarray(labels)
    sets = []
    for c in range(copies):
        final = Path(cache_dir) / f"{_key(images, labels, seed, c)}.npz" if cache_dir is not None else None
        if final is not None and final.exists():
            with np.load(final) as z:
                sets.append(z["images"])
            continue
        out = np.zeros_like(images)
        refused = 0
        spans = [(s, min(s + chunk, len(images))) for s in range(0, len(images), chunk)]
        bar = tqdm(total=len(images), desc=f"upload renditions {c + 1}/{copies}", disable=not progress, unit="img")
        calls = [(images[a:b], labels[a:b], a, seed, c) for a, b in spans]
        for (a, b), (rendered, r) in zip(spans, map_chunks(_render_chunk, calls, workers)):
            out[a:b] = rendered
            refused += r
            bar.update(b - a)
        bar.close()
        if refused:
            log.warning("upload renditions %d/%d: %d of %d refused (kept as they were)", c + 1, copies, refused, len(images))
        if final is not None:
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_suffix(".tmp.npz")
            with open(tmp, "wb") as f:
                np.savez_compressed(f, images=out)
            tmp.replace(final)
        sets.append(out)
    return np.stack(sets)


def describe(fraction: float, copies: int, seed: int = SEED) -> str:
    """What the card says about the upload renditions."""
    return (
        f"{copies} upload rendition{'s' if copies != 1 else ''} of each training image (digits.data.upload_renditions "
        f"v{FORMAT_VERSION}, seed {seed}: one of the upload set's {len(VARIANTS)} recipes at random -- PNG/JPEG, "
        f"28/112/560 px, both polarities, tight crops and margins, paper, ruled and squared paper, blur, "
        f"photographed -- read back by the service's upload preprocessing); each sample is replaced by one of "
        f"them with probability {fraction}"
    )
