"""Preprocessing figures: strokes -> 28x28 (strokes_to_mnist) and uploads -> 28x28 (image_to_mnist).

    .venv/bin/python bench/preprocess.py [--data-dir ../shared/data/mnist] [--drawings 500] [--uploads 10000]

Drawings are MNIST test digits traced by ``skeleton_strokes`` onto a 280 px canvas and densified
every 3 px like mouse input. Upload timings: decoded images of 28, 512 and 4,000 px and a
1,000 px photo (decoding not timed). Upload accuracy: the MNIST test set written as 28 and 112 px
PNGs, both polarities, whole or cropped to the ink plus 0-2 px, through decode_upload and
image_to_mnist and the current model, beside the model reading MNIST directly. Prints figures
only (no assertions); single thread.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from digits.data.mnist import load_split  # noqa: E402
from digits.data.strokes import densify, skeleton_strokes, stroke_width  # noqa: E402
from digits.inference.images import BadImage, decode_upload, image_to_mnist  # noqa: E402
from digits.inference.predictor import load_predictor  # noqa: E402
from digits.inference.render import strokes_to_mnist  # noqa: E402


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


def page(digit: np.ndarray, side: int) -> Image.Image:
    """A plain upload of ``side`` px: the digit (dark on white) filling the middle half."""
    big = 255 - cv2.resize(digit, (side // 2, side // 2), interpolation=cv2.INTER_CUBIC)
    out = np.full((side, side), 245, np.uint8)
    out[side // 4 : side // 4 + side // 2, side // 4 : side // 4 + side // 2] = np.minimum(big, 245)
    return Image.fromarray(out)


def upload(a: np.ndarray, size: int, dark_ink: bool, margin: int | None) -> bytes:
    """An MNIST image as a ``size`` px PNG, cropped to its ink plus ``margin`` px (None: whole)."""
    if size != 28:
        a = cv2.resize(a, (size, size), interpolation=cv2.INTER_CUBIC)
    if margin is not None:
        ys, xs = np.nonzero(a)
        a = a[max(0, ys.min() - margin) : ys.max() + 1 + margin, max(0, xs.min() - margin) : xs.max() + 1 + margin]
    buf = io.BytesIO()
    Image.fromarray(255 - a if dark_ink else a).save(buf, "PNG")
    return buf.getvalue()


def timed(name: str, images: list[Image.Image], rounds: int = 3) -> None:
    image_to_mnist(images[0])  # warm-up
    times = []
    for _ in range(rounds):
        for img in images:
            t = time.perf_counter()
            image_to_mnist(img)
            times.append(time.perf_counter() - t)
    summary(name, times)


def upload_accuracy(images: np.ndarray, labels: np.ndarray) -> None:
    predictor = load_predictor(REPO / "models")
    direct = float((predictor.predict(images / 255.0).argmax(axis=1) == labels).mean())
    print(f"uploads: {len(images)} MNIST test images, model {predictor.name}, read directly {direct:.2%}")
    for size in (28, 112):
        for dark_ink in (False, True):
            for margin in (None, 0, 1, 2):
                out, refused = [], 0
                for a in images:
                    try:
                        out.append(image_to_mnist(decode_upload(upload(a, size, dark_ink, margin))))
                    except BadImage:
                        out.append(np.zeros((28, 28), np.float32))
                        refused += 1
                acc = float((predictor.predict(np.stack(out)).argmax(axis=1) == labels).mean())
                name = f"{size} px, {'dark on light' if dark_ink else 'light on dark'}, " + (
                    "whole" if margin is None else f"crop +{margin} px"
                )
                print(f"  {name:<36} {acc:7.2%}  ({acc - direct:+.2%} vs direct)   refused {refused}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared/data/mnist")
    parser.add_argument("--drawings", type=int, default=500)
    parser.add_argument("--photos", type=int, default=20)
    parser.add_argument("--uploads", type=int, default=10000, help="MNIST test images for the upload accuracy")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)

    images, labels = load_split(args.data_dir, "test")
    drawings = []
    for img in images[: args.drawings]:
        strokes = [densify(s, 3.0) for s in skeleton_strokes(img, scale=10.0)]
        drawings.append((strokes, stroke_width(img) * 10.0))
    points = [sum(len(s) for s in strokes) for strokes, _ in drawings]
    print(
        f"{len(drawings)} drawings: {np.mean([len(s) for s, _ in drawings]):.2f} strokes, "
        f"{np.mean(points):.0f} points on average (max {max(points)})"
    )

    for strokes, brush in drawings[:20]:  # warm-up
        strokes_to_mnist(strokes, (280, 280), brush)
    times = []
    for strokes, brush in drawings:
        t = time.perf_counter()
        strokes_to_mnist(strokes, (280, 280), brush)
        times.append(time.perf_counter() - t)
    summary("strokes_to_mnist (280 px canvas)", times)

    n = args.photos
    timed("image_to_mnist (28 px MNIST image)", [Image.fromarray(images[i]) for i in range(n)])
    timed("image_to_mnist (512 px upload)", [page(images[i], 512) for i in range(n)])
    timed("image_to_mnist (4000 px upload)", [page(images[i], 4000) for i in range(min(n, 8))], rounds=2)
    timed("image_to_mnist (1000x1000 photo)", [photo(images[i], seed=i) for i in range(n)])

    upload_accuracy(images[: args.uploads], labels[: args.uploads])


if __name__ == "__main__":
    main()
