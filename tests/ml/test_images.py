"""Uploads: validation/decoding (decode_upload) and photo -> ink -> 28x28 (image_to_mnist)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from digits.images import BadImage, decode_upload, image_to_ink, image_to_mnist
from digits.render import render_strokes

FOUR = [[(60, 20), (25, 110), (105, 110)], [(85, 45), (85, 170)]]
TWO = [[(30, 50), (60, 20), (100, 30), (105, 70), (30, 160), (120, 160)]]


def digit(strokes=FOUR, size: int = 200, brush: float = 16) -> np.ndarray:
    """A synthetic digit: ink in [0, 1] centred on a size x size canvas."""
    ink = render_strokes(strokes, brush, target=size // 2)
    canvas = np.zeros((size, size), dtype=np.float32)
    top, left = (size - ink.shape[0]) // 2, (size - ink.shape[1]) // 2
    canvas[top : top + ink.shape[0], left : left + ink.shape[1]] = ink
    return canvas


def photo(ink: np.ndarray, *, dark: bool = True, gradient: bool = False, specks: bool = False) -> Image.Image:
    """Dark ink on paper (or the inverse), optionally under uneven light with specks and noise."""
    rng = np.random.default_rng(1)
    h, w = ink.shape
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    paper = 0.9 - (0.4 * xx + 0.2 * yy if gradient else 0.0)
    img = paper * (1 - 0.85 * ink)
    if specks:
        for cy, cx in rng.integers(0, min(h, w), size=(25, 2)):
            img[max(0, cy - 1) : cy + 2, max(0, cx - 1) : cx + 2] *= 0.4
    img = img + rng.normal(0, 0.015, img.shape)
    img = np.clip(img if dark else 1 - img, 0, 1)
    return Image.fromarray((img * 255).astype(np.uint8))


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(w: int, h: int, idat: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


# --------------------------------------------------------------------------- decode_upload


def test_png_and_jpeg_decode_to_grayscale() -> None:
    img = photo(digit())
    for data in (encode(img), encode(img.convert("RGB"), "JPEG", quality=90)):
        out = decode_upload(data)
        assert out.mode == "L" and out.size == (200, 200)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize(
    "data",
    [b"not an image at all", encode(Image.new("L", (30, 30)), "GIF"), encode(Image.new("RGB", (30, 30)), "BMP")],
    ids=["text", "gif", "bmp"],
)
def test_other_formats_are_bad_images(data: bytes) -> None:
    with pytest.raises(BadImage) as err:
        decode_upload(data)
    assert err.value.code == "bad_image" and str(err.value)


def test_empty_and_truncated_files() -> None:
    with pytest.raises(BadImage) as err:
        decode_upload(b"")
    assert err.value.code == "bad_image"
    data = encode(photo(digit(), gradient=True, specks=True))
    with pytest.raises(BadImage) as err:
        decode_upload(data[: len(data) // 2])
    assert err.value.code == "bad_image"
    jpeg = encode(photo(digit()), "JPEG")
    with pytest.raises(BadImage) as err:
        decode_upload(jpeg[: len(jpeg) // 2])
    assert err.value.code == "bad_image"


def test_too_many_bytes() -> None:
    with pytest.raises(BadImage) as err:
        decode_upload(encode(photo(digit())), max_bytes=1000)
    assert err.value.code == "too_large"


def test_huge_declared_size_is_refused_before_decoding() -> None:
    with pytest.raises(BadImage) as err:
        decode_upload(png_header_only(20000, 20000, zlib.compress(b"\0" * 20001)))
    assert err.value.code == "too_large"


def test_decompression_bomb() -> None:
    # A real 6000 x 6000 all-black PNG: ~36 MB of pixels in a few tens of KB.
    comp = zlib.compressobj(9)
    row = b"\0" * 6001
    idat = b"".join(comp.compress(row * 500) for _ in range(12)) + comp.flush()
    bomb = png_header_only(6000, 6000, idat)
    assert len(bomb) < 100_000
    with pytest.raises(BadImage) as err:
        decode_upload(bomb)
    assert err.value.code == "too_large"
    with pytest.raises(BadImage) as err:  # a smaller limit applies to ordinary images too
        decode_upload(encode(Image.new("L", (300, 300), 255)), max_pixels=200 * 200)
    assert err.value.code == "too_large"


def test_exif_orientation_is_applied() -> None:
    img = Image.new("L", (60, 30), 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    out = decode_upload(encode(img, "JPEG", exif=exif))
    assert out.size == (30, 60)


def test_transparency_is_composited_on_white() -> None:
    ink = digit()
    rgba = np.zeros((200, 200, 4), dtype=np.uint8)  # black everywhere, only the digit opaque
    rgba[..., 3] = (ink * 255).astype(np.uint8)
    out = decode_upload(encode(Image.fromarray(rgba, "RGBA")))
    arr = np.asarray(out)
    assert arr[0, 0] == 255 and arr.min() < 30
    ref = image_to_mnist(photo(ink))
    assert corr(image_to_mnist(out), ref) > 0.95


# --------------------------------------------------------------------------- image_to_mnist


@pytest.mark.parametrize("strokes", [FOUR, TWO], ids=["four", "two"])
def test_polarity_does_not_matter(strokes) -> None:
    ink = digit(strokes)
    dark = image_to_mnist(photo(ink, dark=True))
    light = image_to_mnist(photo(ink, dark=False))
    assert dark.shape == (28, 28) and dark.dtype == np.float32
    assert corr(dark, light) > 0.95
    from digits.normalize import mnist_normalize

    assert corr(dark, mnist_normalize(ink)) > 0.9


@pytest.mark.parametrize("strokes", [FOUR, TWO], ids=["four", "two"])
def test_uneven_background_and_specks(strokes) -> None:
    ink = digit(strokes)
    clean = image_to_mnist(photo(ink))
    messy = image_to_mnist(photo(ink, gradient=True, specks=True))
    assert corr(clean, messy) > 0.9
    jpeg = image_to_mnist(decode_upload(encode(photo(ink, gradient=True, specks=True), "JPEG", quality=75)))
    assert corr(clean, jpeg) > 0.9


def test_mnist_style_image_round_trips() -> None:
    from digits.normalize import mnist_normalize

    ref = mnist_normalize(digit(TWO, size=60, brush=24))
    img = Image.fromarray((ref * 255).astype(np.uint8))  # white on black, 28 x 28
    assert corr(image_to_mnist(img), ref) > 0.97


def test_thin_pen_strokes_are_thickened() -> None:
    thin = image_to_mnist(photo(digit(FOUR, size=400, brush=4)))
    assert thin.max() > 0.9 and (thin > 0.5).sum() > 40


def test_large_photo_and_blank_images() -> None:
    big = photo(digit(FOUR, size=1000, brush=60), gradient=True, specks=True)
    assert image_to_mnist(big).shape == (28, 28)
    for blank in (Image.new("L", (100, 80), 255), Image.new("L", (50, 50), 0), photo(np.zeros((120, 120)), gradient=True)):
        assert image_to_ink(blank).max() == 0
        with pytest.raises(BadImage) as err:
            image_to_mnist(blank)
        assert err.value.code == "empty_image"
