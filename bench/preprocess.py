"""Preprocessing figures: strokes -> 28x28 (strokes_to_mnist) and photo -> 28x28 (image_to_mnist).

    .venv/bin/python bench/preprocess.py [--data-dir ../shared/data/mnist] [--drawings 500]

Drawings are MNIST test digits traced by ``skeleton_strokes`` onto a 280 px canvas and densified
every 3 px like mouse input. Prints figures only (no assertions); single thread.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from digits.images import image_to_mnist  # noqa: E402
from digits.mnist import load_split  # noqa: E402
from digits.render import strokes_to_mnist  # noqa: E402
from digits.strokes import densify, skeleton_strokes, stroke_width  # noqa: E402


def summary(name: str, times: list[float]) -> None:
    ms = sorted(t * 1e3 for t in times)
    p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
    print(f"{name:<40} median {statistics.median(ms):7.3f} ms   p95 {p95:7.3f} ms   (n={len(ms)})")


def photo(digit: np.ndarray, side: int = 1000, seed: int = 0) -> Image.Image:
    """A photo-like image: a dark digit on unevenly lit paper with noise and specks."""
    rng = np.random.default_rng(seed)
    ink = np.zeros((side, side), dtype=np.float32)
    big = np.asarray(Image.fromarray(digit).resize((side // 2, side // 2), Image.Resampling.BICUBIC), np.float32)
    ink[side // 4 : side // 4 + side // 2, side // 5 : side // 5 + side // 2] = np.clip(big / 255, 0, 1)
    yy, xx = np.mgrid[:side, :side] / side
    img = (0.9 - 0.3 * xx - 0.15 * yy) * (1 - 0.8 * ink) + rng.normal(0, 0.02, ink.shape)
    for cy, cx in rng.integers(0, side, size=(40, 2)):
        img[cy : cy + 3, cx : cx + 3] *= 0.5
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared/data/mnist")
    parser.add_argument("--drawings", type=int, default=500)
    parser.add_argument("--photos", type=int, default=20)
    args = parser.parse_args()

    images, _ = load_split(args.data_dir, "test")
    drawings = []
    for img in images[: args.drawings]:
        strokes = [densify(s, 3.0) for s in skeleton_strokes(img, scale=10.0)]
        drawings.append((strokes, stroke_width(img) * 10.0))
    points = [sum(len(s) for s in strokes) for strokes, _ in drawings]
    print(f"{len(drawings)} drawings: {np.mean([len(s) for s, _ in drawings]):.2f} strokes, "
          f"{np.mean(points):.0f} points on average (max {max(points)})")

    for strokes, brush in drawings[:20]:  # warm-up
        strokes_to_mnist(strokes, (280, 280), brush)
    times = []
    for strokes, brush in drawings:
        t = time.perf_counter()
        strokes_to_mnist(strokes, (280, 280), brush)
        times.append(time.perf_counter() - t)
    summary("strokes_to_mnist (280 px canvas)", times)

    photos = [photo(images[i], seed=i) for i in range(args.photos)]
    image_to_mnist(photos[0])
    times = []
    for img in photos:
        t = time.perf_counter()
        image_to_mnist(img)
        times.append(time.perf_counter() - t)
    summary("image_to_mnist (1000x1000 photo)", times)


if __name__ == "__main__":
    main()
