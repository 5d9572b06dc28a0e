"""Uploaded files -> validated grayscale images: the work bounded before any pixel is decoded
(:mod:`digits.inference.upload_guard`), big JPEGs decoded at reduced size, WebP through OpenCV,
EXIF orientation applied, transparency composited on white."""

from __future__ import annotations

import contextlib
import io
import warnings

import cv2
import numpy as np
from PIL import Image, ImageOps

from digits.inference.upload_guard import MAX_DECODED_BYTES, OFFERED, BadImage, Checked, Limits, check_upload

# Workers are single-threaded processes (one per core): OpenCV's own thread pool would only
# oversubscribe the cores.
cv2.setNumThreads(1)

# The formats the page offers, by what digits.inference.upload_guard recognised: Pillow's name for what it opened
# (a phone's JPEG with a depth map or a second picture opens as "MPO"; its first picture is decoded).
# WebP is decoded by OpenCV (see _decode_webp).
FORMATS = {"PNG": {"PNG"}, "JPEG": {"JPEG", "MPO"}, "GIF": {"GIF"}}
JPEG_DRAFT_SIDE = 1024  # a JPEG is decoded at 1/2, 1/4 or 1/8 scale, its longer side kept >= this


def decode_upload(
    data: bytes,
    *,
    max_bytes: int = 5 * 2**20,
    max_pixels: int = 4096 * 4096,
    max_side: int = 4096,
    max_decoded_bytes: int = MAX_DECODED_BYTES,
) -> Image.Image:
    """Validate and decode a PNG, JPEG, WebP or GIF upload into a grayscale ("L") image.

    The work is bounded before any pixel is decoded (digits.inference.upload_guard: the format, the declared
    size in pixels and in decoded bytes, a JPEG's scans, a PNG's chunks), and a JPEG is decoded at
    reduced size. EXIF orientation is applied; transparency is composited on white.
    """
    if not data:
        raise BadImage("bad_image", "The file is empty.")
    if len(data) > max_bytes:
        raise BadImage("too_large", f"The file is larger than {max_bytes // 2**20} MB.")
    checked = check_upload(data, Limits(max_pixels, max_side, max_decoded_bytes))
    if checked.format == "WEBP":
        return _decode_webp(checked)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(checked.data), formats=[checked.format])
            w, h = img.size
            if img.format not in FORMATS[checked.format] or w * h > max_pixels or max(w, h) > max_side:
                raise BadImage("bad_image", f"The file is not a readable {OFFERED} image.")
            if img.format in FORMATS["JPEG"]:
                img.draft("L", (JPEG_DRAFT_SIDE, JPEG_DRAFT_SIDE))  # the decoder downscales big photos
            img.load()
            ImageOps.exif_transpose(img, in_place=True)  # (without in_place: a copy, 64 MB for big RGBA)
            return _to_gray(img)
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage("too_large", "The image declares too many pixels.") from exc
    except Exception as exc:  # any decoder failure: truncated, corrupt, unsupported mode...
        raise BadImage("bad_image", f"The file is not a readable {OFFERED} image.") from exc


def _decode_webp(checked: Checked) -> Image.Image:
    """A WebP through OpenCV's libwebp decoder: a third of the time and memory of Pillow's, which
    composites through libwebp's animation decoder (two more canvases). Its first frame; alpha on
    white; the EXIF orientation, which OpenCV does not read with alpha, applied here."""
    arr = cv2.imdecode(np.frombuffer(checked.data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.shape[:2] != (checked.height, checked.width):
        raise BadImage("bad_image", f"The file is not a readable {OFFERED} image.")
    if arr.ndim == 2:
        gray = arr
    elif arr.shape[2] == 4:
        gray = _on_white(cv2.cvtColor(arr, cv2.COLOR_BGRA2GRAY), arr[..., 3])
    else:
        gray = cv2.cvtColor(arr, cv2.COLOR_BGR2GRAY)
    del arr
    img = Image.fromarray(gray)
    if checked.exif:
        img.info["exif"] = checked.exif
        with contextlib.suppress(Exception):  # unreadable EXIF: shown as stored
            ImageOps.exif_transpose(img, in_place=True)
    return img


def _on_white(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 grey composited by its alpha on white: 255 - (255 - gray) * alpha / 255."""
    return cv2.bitwise_not(cv2.multiply(cv2.bitwise_not(gray), alpha, scale=1 / 255))


def _to_gray(img: Image.Image) -> Image.Image:
    """Grayscale "L"; transparent pixels become white, 16-bit images are scaled down. No copy
    wider than the decoded image is made (a 4096 x 4096 RGBA image is 64 MB already)."""
    if img.mode in ("I;16", "I;16B", "I;16L"):
        arr = np.asarray(img)
        top = 65535.0 if int(arr.max(initial=0)) > 255 else 255.0
        return Image.fromarray(cv2.convertScaleAbs(arr, alpha=255.0 / top))  # rounded, saturated, uint8
    if img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        if img.mode not in ("RGBA", "LA"):
            img = img.convert("LA" if img.mode in ("P", "L", "1", "PA") else "RGBA")
        out = Image.new("L", img.size, 255)
        out.paste(img.convert("L"), mask=img.getchannel("A"))  # blended by alpha, in place
        return out
    if img.mode == "CMYK":
        img = img.convert("RGB")
    return img.convert("L")
