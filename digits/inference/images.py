"""Uploaded photos/scans -> validated grayscale images (:mod:`digits.inference.decode`) -> ink ->
MNIST-style 28x28 digits."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from digits.inference.decode import decode_upload
from digits.inference.normalize import ink_bbox, mnist_normalize
from digits.inference.upload_guard import BadImage

__all__ = ["BadImage", "decode_upload", "image_to_ink", "image_to_mnist"]

WORK_SIDE = 512  # photos are analysed with their longer side at most this
LOOK_SIDE = 64  # polarity, the background model and the strokes' width (which sets the model's
# scale) are worked out on a copy this size
BACKGROUND_STROKES = 5  # the background model's square spans this many stroke widths (a shadow's
# edge or a badly lit band narrower than the square is taken for ink)
LINE_SHARE = 0.25  # a printed line runs straight across at least this share of the image
PAGE_SIDE = 256  # an image at least this large may be a photo of a page: shadows, printed lines
DIGIT_SIDE = 80  # the cropped digit is returned at this longer side (4x MNIST's 20 px)
MIN_CONTRAST = 0.08  # weakest ink/background difference (0..1 gray levels) that counts as ink
THIN = 0.07  # stroke width / digit size below which strokes are thickened
THICKEN_TO = 0.11  # ... up to this ratio


# --------------------------------------------------------------------------- ink extraction
#
# The digit may fill its image (a tight crop, ink touching the border, an 8 px scan), so nothing
# below assumes that the border, or most pixels, are background: polarity is read from the whole
# picture, the background model ignores what lies outside the image, and noise is measured on
# background pixels away from ink edges.


def _resize_longer(a: np.ndarray, side: int) -> np.ndarray:
    """Resize so the longer side is ``side`` (area averaging down, bilinear up)."""
    h, w = a.shape
    s = side / max(h, w)
    if s == 1:
        return a
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(a, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)


def _spans(mask: np.ndarray) -> bool:
    """Whether one connected piece of ``mask`` touches all four sides of the image."""
    h, w = mask.shape
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    s = stats[1:]
    return bool(np.any((s[:, 0] == 0) & (s[:, 1] == 0) & (s[:, 0] + s[:, 2] == w) & (s[:, 1] + s[:, 3] == h)))


def _ring(a: np.ndarray, width: int) -> np.ndarray:
    return np.concatenate(
        [a[:width].ravel(), a[-width:].ravel(), a[width:-width, :width].ravel(), a[width:-width, -width:].ravel()]
    )


def _ink_is_dark(look: np.ndarray, small: bool = False) -> bool:
    """Polarity of a small uint8 copy: dark ink on light paper, or the inverse.

    The two Otsu classes are compared where they meet the border: background holds most of it,
    even in a crop with no margin (ink touches the border only where strokes end). Only when the
    border is shared (a digit that fills its frame, e.g. a small scan of a 0) does topology
    decide: the ink is the class with one piece reaching all four sides, the background the
    corners and holes it leaves. For a ``small`` image (a crop or a scan, not a photo of a page)
    that is asked first: a bold digit cropped to its ink is most of the picture, which the median
    flattening below takes for the paper."""
    look = cv2.GaussianBlur(look, (3, 3), 0)
    ring = max(1, min(look.shape) // 32)
    _, dark = cv2.threshold(look, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    border = float(_ring(dark, ring).mean())
    if border <= 0.25 or border >= 0.75:
        return border < 0.5
    if small:  # shadows are a photo's: a crop's mixed border is ink reaching the edges
        spans_dark, spans_light = _spans(dark), _spans(1 - dark)
        if spans_dark != spans_light:
            return spans_dark
    # Not clear-cut: uneven light or a shadow may make a class of its own. Flattened by a median a
    # fifth of the image wide, which follows a shadow's edge but not a sparse digit's strokes: a
    # border that is (nearly) all one class settles it. Where the ink is dense (a tight crop) that
    # median eats thick strokes, so anything less falls through to the wide median below.
    fine = look.astype(np.int16) - cv2.medianBlur(look, max(3, (max(look.shape) // 5) | 1)) + 128
    _, dark = cv2.threshold(np.clip(fine, 0, 255).astype(np.uint8), 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    border = float(_ring(dark, ring).mean())
    if border <= 0.05 or border >= 0.95:
        return border < 0.5
    flat = look.astype(np.int16) - cv2.medianBlur(look, max(3, (max(look.shape) // 2) | 1)) + 128
    _, dark = cv2.threshold(np.clip(flat, 0, 255).astype(np.uint8), 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    border = float(_ring(dark, ring).mean())
    if border <= 0.35 or border >= 0.65:
        return border < 0.5
    spans_dark, spans_light = _spans(dark), _spans(1 - dark)
    if spans_dark != spans_light:
        return spans_dark
    return float(dark.mean()) <= 0.5


def _background(x: np.ndarray, share: float = 0.5) -> np.ndarray:
    """Smooth background of an ink-positive image (ink bright): a grey opening with a square of
    ``share`` of the image's longer side (by default half: wider than any stroke, even in a digit
    that fills its frame), on a copy at most LOOK_SIDE px, smoothed and brought back to full size.
    An opening keeps linear light gradients, and shadow edges that the square fits beside;
    outside the image is ignored, so a tight crop needs no margin."""
    # A large image is smoothed, else the opening follows the noise's minima; a small image is a crop: its
    # strokes are wide next to a 5 px blur.
    small = cv2.GaussianBlur(_resize_longer(x, LOOK_SIDE), (5, 5), 0) if max(x.shape) > LOOK_SIDE else x
    k = max(3, int(share * max(small.shape)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    # Extended past the border by a quadratic fitted to a first (ink-free) opening, so that a
    # light gradient runs on instead of ending in a corner that the opening would cut off.
    h, w = small.shape
    p = k // 2
    yy, xx = np.mgrid[-p : h + p, -p : w + p].astype(np.float32)
    yy, xx = yy / max(h, w), xx / max(h, w)
    basis = np.stack([np.ones_like(xx), xx, yy, xx * xx, xx * yy, yy * yy], axis=-1)
    # fitted on the middle only: near the border the first opening is cut off too
    q = min(p, (min(h, w) - 1) // 3)
    inner = basis[p + q : p + h - q : 2, p + q : p + w - q : 2].reshape(-1, 6)
    first = cv2.morphologyEx(small, cv2.MORPH_OPEN, kernel)[q : h - q : 2, q : w - q : 2]
    coef = np.linalg.lstsq(inner, first.ravel(), rcond=None)[0]
    # ... within the image's own range: shading that is no quadratic must not overshoot
    ext = np.clip(basis @ coef.astype(np.float32), float(small.min()), float(small.max())).astype(np.float32)
    ext[p : p + h, p : p + w] = small
    bg = cv2.blur(cv2.morphologyEx(ext, cv2.MORPH_OPEN, kernel), (k, k))[p : p + h, p : p + w]
    if bg.shape != x.shape:
        bg = cv2.resize(bg, (x.shape[1], x.shape[0]), interpolation=cv2.INTER_LINEAR)
    return bg


def _stroke_share(small: np.ndarray) -> float:
    """Typical stroke width of an ink-positive residual as a share of its longer side, measured
    roughly (from the distance transform's ridges) on a small copy of it."""
    binary = (small > 0.5 * float(np.percentile(small, 99.5))).astype(np.uint8)
    # specks and grain would pass for hairlines: only pieces of some size count
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if n > 2:
        area = stats[1:, cv2.CC_STAT_AREA]
        lut = np.concatenate([[0], area >= 0.1 * area.max()]).astype(np.uint8)
        binary = lut[labels]
    dist = cv2.distanceTransform(cv2.copyMakeBorder(binary, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0), cv2.DIST_L2, 3)
    ridge = (dist > 0) & (dist >= cv2.dilate(dist, np.ones((3, 3), np.uint8)))
    return 2.0 * float(np.median(dist[ridge])) / max(small.shape) if ridge.any() else 1.0


_CURVATURE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def _noise(r: np.ndarray, background: np.ndarray) -> float:
    """Pixel noise (sigma) on the background: the robust spread of a second difference, which
    ignores smooth shading and blur but not sensor grain or JPEG blocks (Immerkaer's estimator)."""
    curvature = np.abs(cv2.filter2D(r, -1, _CURVATURE))[1:-1, 1:-1]
    values = curvature[background[1:-1, 1:-1]]
    return 1.4826 / 6 * float(np.median(values)) if values.size >= 16 else 0.0  # too few: clean


def _otsu(r: np.ndarray, top: float) -> float:
    """Otsu's threshold of ``r`` clipped to [0, top], in r's units."""
    u8 = cv2.convertScaleAbs(r, alpha=255.0 / top)  # saturates at top, negatives fold to |r|
    t, _ = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(t) * top / 255.0


def _drop_rules(weak: np.ndarray, strong: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Remove ruled or squared paper lines: thin bands of rows (or columns) of weak ink across
    nearly the whole image that are clearly fainter than the rest of the ink (a digit's own bar,
    even one that spans a tight crop, is thicker or as dark as the rest of it)."""
    lines = np.zeros(weak.shape, bool)
    for axis in (1, 0):  # rows, then columns
        full = weak.mean(axis=axis) >= 0.9
        if not full.any():
            continue
        n, runs = cv2.connectedComponents(full.astype(np.uint8)[:, None])
        across = weak.shape[0 if axis == 1 else 1]
        for i in range(1, n):
            band = runs[:, 0] == i
            if band.sum() <= max(3, 0.04 * across):
                if axis == 1:
                    lines[band] = True
                else:
                    lines[:, band] = True
    if not lines.any():
        return weak
    lines = cv2.dilate(lines.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    on_line = lines & weak.astype(bool)
    rest = strong.astype(bool) & ~on_line
    if not rest.any():
        return weak
    line_level, ink_level = float(np.median(r[on_line])), float(np.percentile(r[rest], 90))
    if line_level > 0.6 * ink_level:
        return weak
    keep = ~on_line | (r > 0.5 * (line_level + ink_level))
    return weak & keep.astype(np.uint8)


def _drop_lines(weak: np.ndarray, strong: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Remove printed lines at any angle (ruled paper photographed at a slant, a margin line):
    straight runs of thin weak ink across at least LINE_SHARE of the image (a probabilistic
    Hough transform, which bridges the gaps a faint line leaves), where they are clearly fainter
    than the rest of the ink. Only their thin parts go: where a line crosses a stroke, the stroke
    (wider than the opening's square) stays whole."""
    side = max(weak.shape)
    if side < PAGE_SIDE // 2:  # a small image's straight strokes are the digit's own
        return weak
    d = max(3, side // 40) | 1  # wider than a printed line, narrower than a digit's stroke
    square = cv2.getStructuringElement(cv2.MORPH_RECT, (d, d))  # separable: fast at any size
    thin = weak & (1 - cv2.morphologyEx(weak, cv2.MORPH_OPEN, square))
    length = LINE_SHARE * side
    if cv2.countNonZero(thin) < length / 2:  # too few thin pixels for any line
        return weak
    segments = cv2.HoughLinesP(
        thin, 1, np.pi / 180, threshold=max(10, int(length / 2)), minLineLength=length, maxLineGap=max(2.0, 0.03 * side)
    )
    if segments is None:
        return weak
    band = np.zeros_like(weak)
    for x0, y0, x1, y1 in segments.reshape(-1, 4):
        cv2.line(band, (int(x0), int(y0)), (int(x1), int(y1)), 1, d)
    on_line = (band & thin).astype(bool)
    rest = strong.astype(bool) & ~on_line
    if not rest.any() or not on_line.any():
        return weak
    # a hairline digit's straight stroke is as dark as its other strokes: kept
    if float(np.median(r[on_line])) > 0.6 * float(np.percentile(r[rest], 90)):
        return weak
    return weak & ~on_line.astype(np.uint8)


def _select(stats: np.ndarray, mass: np.ndarray) -> list[int]:
    """Labels of the digit: the heaviest component plus the significant ones near it that are
    about as dark (not a shadow's edge or a badly lit corner)."""
    if mass.max(initial=0) <= 0:
        return []
    # the digit is among the darkest pieces: a wide faint region (a badly lit corner) has mass
    # but not the level of ink
    level = mass / np.maximum(stats[:, 4], 1)
    sized = (mass > 0) & (stats[:, 4] >= max(4, 0.0005 * stats[:, 4].sum()))
    top_level = float(level[sized].max()) if sized.any() else float(level.max())
    main = int(np.argmax(mass * (level >= 0.5 * top_level)))
    chosen = {main}
    left, top = stats[main, 0], stats[main, 1]
    right, bottom = left + stats[main, 2], top + stats[main, 3]
    significant = (mass >= 0.03 * mass[main]) & (level >= 0.5 * level[main])
    candidates = [int(i) for i in np.flatnonzero(significant) if i != main]
    changed = True
    while changed:  # grow the digit's box with nearby significant pieces
        changed = False
        margin = 0.25 * max(bottom - top, right - left)
        for i in candidates:
            if i in chosen:
                continue
            x, y, w, h = stats[i, :4]
            if max(top - (y + h), y - bottom, left - (x + w), x - right, 0) <= margin:
                chosen.add(i)
                top, bottom, left, right = min(top, y), max(bottom, y + h), min(left, x), max(right, x + w)
                changed = True
    return sorted(chosen)


def _stroke_width(ink: np.ndarray) -> float:
    """Typical stroke width in px: twice the distance-to-background along the strokes' ridges
    (less the ridge pixel itself), at the resolution given."""
    binary = (ink > 0.5 * float(ink.max())).astype(np.uint8)
    dist = cv2.distanceTransform(cv2.copyMakeBorder(binary, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0), cv2.DIST_L2, 3)
    ridge = (dist > 0) & (dist >= cv2.dilate(dist, np.ones((3, 3), np.uint8)))
    return 2.0 * float(np.median(dist[ridge])) - 1.0 if ridge.any() else 0.0


def _thicken(ink: np.ndarray) -> np.ndarray:
    """Dilate strokes much thinner than MNIST's (a ballpoint pen photo, a hairline) to a typical
    width. Measured and thickened at DIGIT_SIDE resolution (a 2 px stroke is too coarse to
    measure); ink that needs nothing is returned untouched."""
    big = _resize_longer(ink, DIGIT_SIDE)
    width = _stroke_width(big)
    if width >= THIN * DIGIT_SIDE:
        return ink
    radius = (THICKEN_TO * DIGIT_SIDE - max(width, 1.0)) / 2
    d = 2 * int(np.ceil(radius)) + 1
    return cv2.dilate(big, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (d, d)))


def image_to_ink(img: Image.Image) -> np.ndarray:
    """Ink image (float32, ink = 1, background = 0) of the digit in a photo/scan, cropped to it.

    Polarity is detected, an uneven background subtracted, contrast stretched, specks, printed
    lines and far away marks dropped; the digit's box is returned (longer side at most DIGIT_SIDE
    px), with strokes much thinner than MNIST's thickened. All zeros when nothing ink-like is found.
    """
    gray = np.asarray(img.convert("L") if img.mode != "L" else img)
    if max(gray.shape) > WORK_SIDE:  # by a whole factor: INTER_AREA's fast path
        f = -(-max(gray.shape) // WORK_SIDE)
        gray = cv2.resize(gray, (max(1, gray.shape[1] // f), max(1, gray.shape[0] // f)), interpolation=cv2.INTER_AREA)
    look = _resize_longer(gray, LOOK_SIDE)
    dark = _ink_is_dark(look, small=max(gray.shape) < PAGE_SIDE)
    ink = _ink(gray, look, dark)
    if ink is None:  # a polarity misread under a deep shadow leaves only faint gaps: the other one
        ink = _ink(gray, look, not dark)
    return ink if ink is not None else np.zeros(gray.shape, np.float32)


def _ink(gray: np.ndarray, look: np.ndarray, dark: bool) -> np.ndarray | None:
    """image_to_ink for the given polarity (``look``: the LOOK_SIDE copy of ``gray``); None when
    nothing ink-like is found."""
    h, w = gray.shape
    side = max(h, w)
    x = gray.astype(np.float32) * (1 / 255.0)
    if dark:
        x = 1.0 - x
    # A photo of a page with thin strokes: a square a few strokes wide models the background, so
    # that it follows a shadow's edge and a band of shade instead of leaving them as ink. Crops and
    # small images keep the half-image square.
    share = 0.5
    if side >= PAGE_SIDE:  # ink found against a wide median of the small copy: cheap, and enough
        ink_up = (
            cv2.subtract(cv2.medianBlur(look, (max(look.shape) // 2) | 1), look)
            if dark
            else cv2.subtract(look, cv2.medianBlur(look, (max(look.shape) // 2) | 1))
        )
        share = min(max(BACKGROUND_STROKES * _stroke_share(ink_up), 0.1), 0.5)
    bg = _background(x, share)
    r = x - bg
    if dark:  # light falls on ink and paper alike: contrast relative to the paper's brightness
        r /= np.maximum(1.0 - bg, 0.5)
    # masks from a lightly smoothed copy: sensor noise and JPEG blocks
    rm = cv2.GaussianBlur(r, (3, 3), 0) if side >= 96 else r
    step = max(1, side // 200)  # statistics on a regular subsample of big images
    peak = float(np.percentile(rm[::step, ::step], 99.9)) if rm.size >= 1000 else float(rm.max())
    if peak < MIN_CONTRAST:
        return None
    t_otsu = _otsu(rm, peak)
    # Noise from background pixels away from ink edges (a tight crop has few of them).
    away = cv2.erode((rm < 0.5 * t_otsu).astype(np.uint8), np.ones((3, 3), np.uint8))
    noise = _noise(r[::step, ::step], away[::step, ::step].astype(bool))
    if peak < 6 * noise:
        return None
    t_hi = max(t_otsu, 4 * noise, 0.4 * peak)
    t_lo = max(0.5 * t_hi, 2.5 * noise)
    strong = (rm > t_hi).astype(np.uint8)
    weak = _drop_lines(_drop_rules((rm > t_lo).astype(np.uint8), strong, rm), strong, rm)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(weak, connectivity=8)
    has_strong = np.bincount(labels[(strong & weak).astype(bool)], minlength=n)[1:] > 0
    mass = np.bincount(labels.ravel(), weights=np.maximum(rm, 0).ravel(), minlength=n)[1:] * has_strong
    chosen = _select(stats[1:], mass)
    if not chosen:
        return None
    ids = np.asarray(chosen) + 1
    left = max(0, int(stats[ids, 0].min()) - 2)
    top = max(0, int(stats[ids, 1].min()) - 2)
    right = int((stats[ids, 0] + stats[ids, 2]).max()) + 2
    bottom = int((stats[ids, 1] + stats[ids, 3]).max()) + 2
    r, labels = r[top:bottom, left:right], labels[top:bottom, left:right]
    lut = np.zeros(n, np.uint8)
    lut[ids] = 1
    keep = cv2.dilate(lut[labels], np.ones((3, 3), np.uint8))  # with a 1 px anti-aliased rim
    ink_level = float(np.percentile(r[strong[top:bottom, left:right].astype(bool) & (keep > 0)], 90))
    floor = min(3 * noise, 0.5 * t_lo)
    ink = np.clip((r - floor) * (1.0 / max(ink_level - floor, 1e-6)), 0.0, 1.0) * keep
    box = ink_bbox(ink)
    if box is None:
        return None
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
