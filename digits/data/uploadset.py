"""The upload test set: what people upload, built from MNIST validation-split digits.

Each variant is a recipe that turns a 28x28 MNIST digit into the bytes of a PNG or JPEG a person
might upload: a clean grid of format (PNG, JPEG) x size (longer side 28, 112, 560 px) x polarity
(dark ink on light, light on dark) x framing (cropped tight, 0-2 px around the ink, or with wide
margins), and scenes: the digit on synthetic paper (texture, lighting gradient), on ruled and on
squared paper, blurred, and photographed (perspective, lighting, noise, blur, JPEG; plain, ruled,
with a shadow across the page, and chalk on a board). Images come from the validation split of the
training part (never the MNIST test set, never trained on); the set is for measuring only, not for
training or choosing anything.

Every random choice is drawn from a generator seeded by (seed, variant, image), so the set is the
same on every machine and a variant's images do not depend on which other variants are built.
With ``worst=True`` every choice takes the hard end of its range (smallest digit, no margin, lowest
JPEG quality, strongest blur...): the tests read those.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import cv2
import numpy as np

from digits.data.mnist import load_split
from digits.data.splits import stratified_split

cv2.setNumThreads(1)  # one image at a time on a shared CPU

SEED = 30_011  # the upload set's seed (its own, apart from the canvas-style sets')
DEFAULT_COUNT = 300  # images per variant in `evaluate`

Format = Literal["PNG", "JPEG"]
Framing = Literal["tight", "margin"]
Scene = Literal["clean", "paper", "ruled", "squared", "blurred", "photo", "photo-ruled", "photo-shadow", "board"]
T = TypeVar("T")


@dataclass(frozen=True)
class Variant:
    name: str
    fmt: Format
    side: int  # the image's longer side, px
    dark_ink: bool  # dark ink on a light ground (else light on dark)
    framing: Framing
    scene: Scene = "clean"


def _grid() -> list[Variant]:
    out = []
    for fmt in ("PNG", "JPEG"):
        for side in (28, 112, 560):
            for dark in (True, False):
                for framing in ("tight", "margin"):
                    name = f"{fmt.lower()}-{side}-{'dark' if dark else 'light'}-{framing}"
                    out.append(Variant(name, fmt, side, dark, framing))
    return out


VARIANTS: tuple[Variant, ...] = (
    *_grid(),
    Variant("paper", "JPEG", 560, True, "margin", "paper"),
    Variant("ruled-paper", "JPEG", 560, True, "margin", "ruled"),
    Variant("squared-paper", "JPEG", 560, True, "margin", "squared"),
    Variant("blurred", "PNG", 112, True, "margin", "blurred"),
    Variant("photo", "JPEG", 560, True, "margin", "photo"),
    Variant("photo-ruled", "JPEG", 560, True, "margin", "photo-ruled"),
    Variant("photo-shadow", "JPEG", 560, True, "margin", "photo-shadow"),
    Variant("photo-board", "JPEG", 560, False, "margin", "board"),
)
VARIANT_BY_NAME = {v.name: v for v in VARIANTS}


@dataclass(frozen=True)
class Upload:
    variant: str
    source: int  # index of the digit in the training part (a validation-split image)
    label: int
    data: bytes  # the encoded PNG/JPEG, what a person uploads


# --------------------------------------------------------------------------- random choices


class Choices:
    """Random draws written (easy, hard): ``worst`` always takes the hard end."""

    def __init__(self, rng: np.random.Generator, worst: bool = False) -> None:
        self.rng = rng
        self.worst = worst

    def u(self, easy: float, hard: float) -> float:
        return float(hard) if self.worst else float(self.rng.uniform(min(easy, hard), max(easy, hard)))

    def i(self, easy: int, hard: int) -> int:
        return int(hard) if self.worst else int(self.rng.integers(min(easy, hard), max(easy, hard) + 1))

    def pick(self, options: Sequence[T]) -> T:
        """One of ``options``, the last being the hardest."""
        return options[-1] if self.worst else options[int(self.rng.integers(len(options)))]

    def free(self, lo: float, hi: float) -> float:
        """A draw that is neither easy nor hard (a position, a direction)."""
        return float(self.rng.uniform(lo, hi))


def variant_rng(seed: int, variant: str, source: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(variant.encode()), int(source)])


# --------------------------------------------------------------------------- the digit's ink


def digit_ink(image28: np.ndarray, size: float) -> np.ndarray:
    """The digit's ink (float32, 1 = ink) cropped to its box, longer side ``size`` px.

    Upscaled digits get a pen's crisp edges back (MNIST's grey rim would otherwise become a
    blur several pixels wide).
    """
    ink = np.asarray(image28, np.float32) / 255.0
    ys, xs = np.nonzero(ink > 0.1)
    y0, y1, x0, x1 = max(ys.min() - 1, 0), ys.max() + 2, max(xs.min() - 1, 0), xs.max() + 2
    crop = ink[y0:y1, x0:x1]
    k = size / max(y1 - y0, x1 - x0)
    w, h = max(1, round(crop.shape[1] * k)), max(1, round(crop.shape[0] * k))
    out = cv2.resize(crop, (w, h), interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)
    if k >= 3:
        out = (out - 0.2) / 0.6
    out = np.clip(out, 0.0, 1.0)
    ys, xs = np.nonzero(out > 0.05)
    out = out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    long = max(out.shape)
    target = max(1, round(size))
    if long != target:  # the threshold box is a pixel or two off: make the longer side exact
        w, h = max(1, round(out.shape[1] * target / long)), max(1, round(out.shape[0] * target / long))
        out = np.clip(cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    return out


def _tight(image28: np.ndarray, side: int, c: Choices) -> np.ndarray:
    """Ink cropped to 0-2 px around the digit, longer side ``side``."""
    m = c.i(2, 0)
    ink = digit_ink(image28, side - 2 * m)
    return np.pad(ink, m)


def _margin(
    image28: np.ndarray, side: int, c: Choices, share: tuple[float, float], place: tuple[float, float] = (0.0, 1.0)
) -> np.ndarray:
    """Ink placed on a larger frame: the digit's longer side is ``share`` (easy, hard) of the frame's
    shorter side, anywhere in the ``place`` range of the free space. At 28 px the MNIST frame
    itself (the digit's 20 px box, 4 px margins)."""
    if side == 28:
        return np.asarray(image28, np.float32) / 255.0
    short = round(side * c.u(1.0, 0.75))
    h, w = (side, short) if c.free(0, 1) < 0.5 else (short, side)
    ink = digit_ink(image28, min(h, w) * c.u(*share))
    ih, iw = ink.shape
    frame = np.zeros((h, w), np.float32)
    top, left = round(c.free(*place) * (h - ih)), round(c.free(*place) * (w - iw))
    frame[top : top + ih, left : left + iw] = ink
    return frame


# --------------------------------------------------------------------------- scenes


def _paper(h: int, w: int, c: Choices, colour: Sequence[float], mottle: float) -> np.ndarray:
    """(h, w, 3) float32 BGR paper: a base colour, low-frequency mottling and fine grain."""
    rng = c.rng
    coarse = rng.standard_normal((max(2, h // 24), max(2, w // 24)), dtype=np.float32)
    low = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    texture = (low * mottle + rng.standard_normal((h, w), dtype=np.float32) * 2.0)[..., None]
    return np.asarray(colour, np.float32)[None, None, :] + texture


def _lines(paper: np.ndarray, spacing: float, colour: Sequence[float], thickness: int, offset: float, vertical: bool) -> None:
    h, w = paper.shape[:2]
    length = w if not vertical else h
    pos = offset % spacing
    limit = h if not vertical else w
    col = tuple(float(v) for v in colour)
    while pos < limit:
        p = round(pos)
        a, b = ((0, p), (length, p)) if not vertical else ((p, 0), (p, length))
        cv2.line(paper, a, b, col, thickness, lineType=cv2.LINE_AA)
        pos += spacing


def _ramp(h: int, w: int, angle: float, x0: float, y0: float) -> np.ndarray:
    """(h, w) float32 distance along the direction ``angle`` from the point (x0, y0)."""
    x = (np.arange(w, dtype=np.float32) - x0) * np.float32(np.cos(angle))
    y = (np.arange(h, dtype=np.float32) - y0) * np.float32(np.sin(angle))
    return y[:, None] + x[None, :]


def _lighting(img: np.ndarray, c: Choices, strength: float) -> np.ndarray:
    """Brightness falling linearly to ``1 - strength`` across the image, in a random direction."""
    h, w = img.shape[:2]
    angle = c.free(0, 2 * np.pi)
    t = _ramp(h, w, angle, 0.0, 0.0)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    return img * (1.0 - strength * t)[..., None]


def _shadow(img: np.ndarray, c: Choices, depth: float) -> np.ndarray:
    """A soft-edged shadow (a hand or a phone) over a random half-plane."""
    h, w = img.shape[:2]
    angle = c.free(0, 2 * np.pi)
    d = _ramp(h, w, angle, c.free(0.2, 0.8) * w, c.free(0.2, 0.8) * h)
    soft = 0.04 * max(h, w)
    shade = 1.0 - depth / (1.0 + np.exp(-d / soft))
    return img * shade[..., None]


def _perspective(img: np.ndarray, c: Choices, amount: float) -> np.ndarray:
    """The page seen at an angle: each corner moved by up to ``amount`` of the image's size."""
    h, w = img.shape[:2]
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    jitter = np.array([[c.free(-1, 1) * amount * w, c.free(-1, 1) * amount * h] for _ in range(4)], dtype=np.float32)
    m = cv2.getPerspectiveTransform(src, src + jitter)
    return cv2.warpPerspective(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _on(ground: np.ndarray, ink: np.ndarray, colour: Sequence[float], opacity: float) -> np.ndarray:
    a = (ink * opacity)[..., None]
    return ground * (1.0 - a) + np.asarray(colour, np.float32)[None, None, :] * a


INKS = ((30.0, 30.0, 35.0), (150.0, 60.0, 25.0), (110.0, 105.0, 100.0))  # BGR: black, blue, pencil
PAPERS = ((246.0, 250.0, 252.0), (215.0, 235.0, 242.0), (228.0, 232.0, 235.0))  # white, cream, recycled


def _scene(image28: np.ndarray, v: Variant, c: Choices) -> np.ndarray:
    """The colour (BGR, float) or grey image of one scene variant."""
    photo = v.scene.startswith("photo") or v.scene == "board"  # keep the digit in the picture after the warp
    ink = _margin(image28, v.side, c, (0.7, 0.4) if v.scene == "blurred" else (0.5, 0.3), (0.15, 0.85) if photo else (0.0, 1.0))
    h, w = ink.shape
    ys, xs = np.nonzero(ink > 0.05)
    digit = float(max(np.ptp(ys), np.ptp(xs)) + 1)  # the digit's longer side, px
    if v.scene == "blurred":  # out of focus: blur relative to the digit (and so to its strokes)
        bg, fg = c.u(245, 215), c.u(20, 70)
        return cv2.GaussianBlur(bg + (fg - bg) * ink, (0, 0), c.u(0.015, 0.04) * digit)
    if v.scene == "board":
        ground = _paper(h, w, c, (45.0, 55.0, 40.0), mottle=c.u(3, 8))
        chalk = ink * np.clip(0.8 + 0.2 * c.rng.standard_normal(ink.shape, dtype=np.float32), 0, 1)
        img = _on(ground, chalk, (225.0, 230.0, 230.0), c.u(0.95, 0.7))
    else:
        ground = _paper(h, w, c, c.pick(PAPERS), mottle=c.u(2, 6))
        if v.scene in ("ruled", "photo-ruled"):
            _lines(ground, digit * c.u(1.0, 0.4), (225.0, 190.0, 150.0), c.i(1, 3), c.free(0, 100), False)
            if c.free(0, 1) < 0.3:  # the red margin line
                _lines(ground, w * 10, (120.0, 110.0, 225.0), c.i(1, 3), c.free(0.05, 0.2) * w, True)
        elif v.scene == "squared":
            spacing = digit * c.u(0.5, 0.25)
            colour, thick = (215.0, 200.0, 185.0), c.i(1, 2)
            _lines(ground, spacing, colour, thick, c.free(0, 100), False)
            _lines(ground, spacing, colour, thick, c.free(0, 100), True)
        img = _on(ground, ink, c.pick(INKS), c.u(1.0, 0.8))
    img = _lighting(img, c, c.u(0.1, 0.4))
    if photo:
        if v.scene == "photo-shadow":
            img = _shadow(img, c, c.u(0.2, 0.45))
        img = _perspective(img, c, c.u(0.03, 0.1))
        img = cv2.GaussianBlur(img, (0, 0), c.u(0.5, 1.5))
        img = img + c.rng.standard_normal(img.shape, dtype=np.float32) * np.float32(c.u(2, 8))
    return img


# --------------------------------------------------------------------------- one upload


def make_image(image28: np.ndarray, variant: Variant, c: Choices) -> np.ndarray:
    """The uint8 image (grey, or BGR for paper scenes) of ``image28`` drawn as ``variant``."""
    if variant.scene != "clean":
        img = _scene(image28, variant, c)
    else:
        ink = _tight(image28, variant.side, c) if variant.framing == "tight" else _margin(image28, variant.side, c, (0.5, 0.25))
        if variant.dark_ink:
            ground, fg = c.u(255, 215), c.u(0, 60)
        else:
            ground, fg = c.u(0, 40), c.u(255, 190)
        img = ground + (fg - ground) * ink
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def encode(img: np.ndarray, fmt: Format, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".png", img) if fmt == "PNG" else cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {fmt}")
    return buf.tobytes()


def make_upload(
    image28: np.ndarray, label: int, source: int, variant: Variant, *, seed: int = SEED, worst: bool = False
) -> Upload:
    c = Choices(variant_rng(seed, variant.name, source), worst)
    img = make_image(image28, variant, c)
    quality = c.i(92, 50 if variant.side >= 112 else 70)  # a 28 px JPEG at 50 would be mostly blocks
    return Upload(variant.name, int(source), int(label), encode(img, variant.fmt, quality))


# --------------------------------------------------------------------------- the set


def validation_digits(data_dir: Path, *, seed: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images, labels, indices in the training part) of the validation split drawn by ``seed``
    and ``val_fraction`` (as training draws it: see a model card's ``training``)."""
    images, labels = load_split(data_dir, "train")
    val = stratified_split(labels, val_fraction, seed)[1]
    return images[val], labels[val], val


def choose(count: int, available: int, seed: int = SEED) -> np.ndarray:
    """Which ``count`` of ``available`` validation digits every variant uses (the same for all, so
    variants compare)."""
    return np.sort(np.random.default_rng(seed).permutation(available)[: max(0, count)])


def build(
    images: np.ndarray,
    labels: np.ndarray,
    sources: np.ndarray,
    *,
    variants: Sequence[Variant] = VARIANTS,
    count: int = DEFAULT_COUNT,
    seed: int = SEED,
    worst: bool = False,
) -> Iterator[Upload]:
    """The uploads of ``count`` of the given digits (validation-split images; ``sources`` their
    indices in the training part) in each variant, variant after variant."""
    pick = choose(count, len(images), seed)
    for v in variants:
        for k in pick:
            yield make_upload(images[k], int(labels[k]), int(sources[k]), v, seed=seed, worst=worst)
