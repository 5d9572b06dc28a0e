"""Uploaded photos/scans -> validated grayscale images -> ink -> MNIST-style 28x28 digits."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.morphology import skeletonize

from digits.normalize import ink_bbox, mnist_normalize

FORMATS = {"PNG", "JPEG"}
WORK_SIDE = 512  # photos are analysed with their longer side at most this
DIGIT_SIDE = 80  # the cropped digit is returned at this longer side (4x MNIST's 20 px)
MIN_CONTRAST = 0.08  # weakest ink/background difference (0..1 gray levels) that counts as ink
THIN = 0.085  # stroke width / digit size below which strokes are thickened (MNIST's 5th pct)
THICKEN_TO = 0.11  # ... up to this ratio (MNIST median is ~0.13)


class BadImage(ValueError):
    """An unusable upload; ``code`` is one of "bad_image", "too_large", "empty_image"."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- decoding


def decode_upload(
    data: bytes, *, max_bytes: int = 5 * 2**20, max_pixels: int = 4096 * 4096
) -> Image.Image:
    """Validate and decode a PNG/JPEG upload into a grayscale ("L") image.

    The declared size is checked before any pixel is decoded, so huge images and decompression
    bombs are refused cheaply. EXIF orientation is applied; transparency is composited on white.
    """
    if not data:
        raise BadImage("bad_image", "The file is empty.")
    if len(data) > max_bytes:
        raise BadImage("too_large", f"The file is larger than {max_bytes // 2**20} MB.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.format not in FORMATS:
                raise BadImage("bad_image", "Only PNG and JPEG images are accepted.")
            w, h = img.size
            if w < 1 or h < 1:
                raise BadImage("bad_image", "The image has no pixels.")
            if w * h > max_pixels:
                raise BadImage("too_large", f"The image is {w}x{h} pixels; at most {max_pixels} are allowed.")
            if img.format == "JPEG":
                img.draft("L", (1024, 1024))  # let the decoder downscale big photos (>= 1024 kept)
            img.load()
            return _to_gray(ImageOps.exif_transpose(img))
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage("too_large", "The image declares too many pixels.") from exc
    except Exception as exc:  # any decoder failure: truncated, corrupt, unsupported mode...
        raise BadImage("bad_image", "The file is not a readable PNG or JPEG image.") from exc


def _to_gray(img: Image.Image) -> Image.Image:
    """Grayscale "L"; transparent pixels become white, 16-bit images are scaled down."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("L")
    return img.convert("L")


# --------------------------------------------------------------------------- ink extraction


def _work_array(img: Image.Image) -> np.ndarray:
    """Float32 gray array in [0, 1] with the longer side reduced to at most WORK_SIDE."""
    img = img.convert("L") if img.mode != "L" else img
    side = max(img.size)
    if side > WORK_SIDE:
        s = WORK_SIDE / side
        img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.Resampling.BOX)
    return np.asarray(img, dtype=np.float32) / 255.0


def _ink_positive(gray: np.ndarray) -> np.ndarray:
    """Flip so that ink is bright: ink is the side further from the border's (background) level."""
    strip = max(1, min(gray.shape) // 50)
    border = np.concatenate(
        [gray[:strip].ravel(), gray[-strip:].ravel(), gray[:, :strip].ravel(), gray[:, -strip:].ravel()]
    )
    bg = float(np.median(border))
    lo, hi = np.percentile(gray, [1, 99])
    return 1.0 - gray if bg - lo > hi - bg else gray


def _background(x: np.ndarray, side: int = 48, rounds: int = 4) -> np.ndarray:
    """Smooth background of an ink-positive image: a quadratic surface fitted robustly (ink and
    other outliers are excluded iteratively) on a downsampled copy."""
    h, w = x.shape
    s = min(1.0, side / max(h, w))
    sh, sw = max(1, round(h * s)), max(1, round(w * s))
    small = np.asarray(Image.fromarray(x).resize((sw, sh), Image.Resampling.BOX)).ravel()
    yy, xx = (g.ravel() for g in np.meshgrid(np.linspace(-1, 1, sh), np.linspace(-1, 1, sw), indexing="ij"))
    basis = np.stack([np.ones_like(xx), xx, yy, xx * xx, xx * yy, yy * yy], axis=1)
    keep = np.ones(len(small), dtype=bool)
    c = np.zeros(6)
    for _ in range(rounds):
        if keep.sum() < 6:
            break
        c = np.linalg.lstsq(basis[keep], small[keep], rcond=None)[0]
        resid = small - basis @ c
        sigma = max(1.4826 * float(np.median(np.abs(resid[keep] - np.median(resid[keep])))), 0.01)
        keep = np.abs(resid) < 2.5 * sigma
    # Evaluate c0 + c1 x + c2 y + c3 x^2 + c4 xy + c5 y^2 at full size by broadcasting.
    y = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    x1 = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    return ((c[0] + c[2] * y + c[5] * y * y) + (c[1] + c[4] * y) * x1 + c[3] * x1 * x1).astype(np.float32)


def _select_components(labels: np.ndarray, strong: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """Labels (1-based) of the digit: the largest component plus the significant ones near it."""
    n = labels.max()
    ids = np.arange(1, n + 1)
    strong_px = ndimage.sum_labels(strong, labels, ids)
    weight = ndimage.sum_labels(mass, labels, ids)
    weight[strong_px == 0] = 0  # a component needs some clearly-inked pixels
    if weight.max(initial=0) <= 0:
        return np.array([], dtype=int)
    slices = ndimage.find_objects(labels)
    main = int(np.argmax(weight))
    chosen = {main}
    top, left = slices[main][0].start, slices[main][1].start
    bottom, right = slices[main][0].stop, slices[main][1].stop
    changed = True
    while changed:  # grow the digit's box with nearby significant pieces
        changed = False
        margin = 0.25 * max(bottom - top, right - left)
        for i in np.flatnonzero(weight >= 0.03 * weight[main]):
            if i in chosen:
                continue
            sy, sx = slices[i]
            gap = max(top - sy.stop, sy.start - bottom, left - sx.stop, sx.start - right, 0)
            if gap <= margin:
                chosen.add(int(i))
                top, bottom = min(top, sy.start), max(bottom, sy.stop)
                left, right = min(left, sx.start), max(right, sx.stop)
                changed = True
    return np.array(sorted(chosen)) + 1


def _resize_longer(ink: np.ndarray, side: int) -> np.ndarray:
    """Resize so the longer side is ``side`` (area averaging down, bilinear up)."""
    h, w = ink.shape
    s = side / max(h, w)
    if s == 1:
        return ink
    size = (max(1, round(w * s)), max(1, round(h * s)))
    resample = Image.Resampling.BOX if s < 1 else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(ink).resize(size, resample), dtype=np.float32)


def _thicken(ink: np.ndarray) -> np.ndarray:
    """Dilate strokes much thinner than MNIST's (e.g. a ballpoint pen photo) to a typical width.

    Works at DIGIT_SIDE resolution (upsampling a small crop first if it needs thickening)."""
    skel = int(skeletonize(ink > 0.5 * ink.max()).sum())
    if skel == 0 or float(ink.sum()) / skel >= THIN * max(ink.shape):
        return ink
    ink = _resize_longer(ink, DIGIT_SIDE)
    skel = max(1, int(skeletonize(ink > 0.5 * ink.max()).sum()))
    radius = (THICKEN_TO * max(ink.shape) - float(ink.sum()) / skel) / 2
    r = max(1, int(np.ceil(radius)))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return ndimage.grey_dilation(ink, footprint=xx * xx + yy * yy <= max(radius, 1.0) ** 2 + 0.5)


def _sample(x: np.ndarray, n: int = 65536) -> np.ndarray:
    """A regular subsample of about ``n`` pixels, for cheap statistics."""
    step = max(1, int(np.sqrt(x.size / n)))
    return x[::step, ::step].ravel()


def image_to_ink(img: Image.Image) -> np.ndarray:
    """Ink image (float32, ink = 1, background = 0) of the digit in a photo/scan, cropped to it.

    Polarity is detected, an uneven background subtracted, contrast stretched, specks and far
    away marks dropped; the digit's box is returned (longer side at most DIGIT_SIDE px), with
    strokes much thinner than MNIST's thickened. All zeros when nothing ink-like is found.
    """
    x = _ink_positive(_work_array(img))
    x -= _background(x)
    sample = _sample(x)
    noise = 1.4826 * float(np.median(np.abs(sample - np.median(sample))))
    peak = float(np.percentile(x, 99.9))
    if peak < max(MIN_CONTRAST, 6 * noise):
        return np.zeros_like(x)
    t_hi = max(float(threshold_otsu(np.clip(sample, 0, peak))), 4 * noise, 0.25 * peak)
    t_lo = max(0.5 * t_hi, 2.5 * noise)
    level = float(np.percentile(x[x > t_hi], 90))
    floor = min(3 * noise, 0.5 * t_lo)
    labels, _ = ndimage.label(x > t_lo, structure=np.ones((3, 3)))
    chosen = _select_components(labels, x > t_hi, x)
    if chosen.size == 0:
        return np.zeros_like(x)
    # Crop to the chosen components (+2 px), keep them plus a 1 px anti-aliased rim.
    slices = ndimage.find_objects(labels)
    top = max(0, min(slices[i - 1][0].start for i in chosen) - 2)
    bottom = max(slices[i - 1][0].stop for i in chosen) + 2
    left = max(0, min(slices[i - 1][1].start for i in chosen) - 2)
    right = max(slices[i - 1][1].stop for i in chosen) + 2
    x, labels = x[top:bottom, left:right], labels[top:bottom, left:right]
    keep = ndimage.binary_dilation(np.isin(labels, chosen))
    ink = np.clip((x - floor) / max(level - floor, 1e-6), 0.0, 1.0) * keep
    box = ink_bbox(ink)
    if box is None:
        return np.zeros_like(x)
    ink = ink[box[0] : box[1], box[2] : box[3]]
    if max(ink.shape) > DIGIT_SIDE:
        ink = _resize_longer(ink, DIGIT_SIDE)
    return np.clip(_thicken(ink), 0.0, 1.0)


def image_to_mnist(img: Image.Image) -> np.ndarray:
    """The (28, 28) float32 MNIST-style image of the digit in ``img``; BadImage("empty_image") if none."""
    out = mnist_normalize(image_to_ink(img))
    if out is None:
        raise BadImage("empty_image", "No digit could be found in the image.")
    return out
