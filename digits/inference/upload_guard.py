"""What an upload costs to decode, read from its own headers before any pixel is decoded.

An uploaded file is decoded by one single-threaded worker, and a decoder's work is not set by the
file's size: a progressive JPEG's decoder walks the whole image once per scan (a 56-byte scan,
repeated 3,000 times in 0.23 MB, held a worker for 4.5 s), Pillow reads a PNG's chunks one by one
in Python (300,000 empty chunks: 0.6 s) and inflates its compressed text, and a 130 KB PNG may
declare 128 MB of 16-bit samples. A decode already running in the worker cannot be interrupted, so
the work is bounded here, up front, from the headers: the format (only those the page offers), the
size in pixels and in bytes, and the count of scans, chunks and blocks.

No library does this: Pillow and libjpeg-turbo read these structures only while decoding (libjpeg-
turbo's own scan limit, TJPARAM_SCANLIMIT, is not reachable through Pillow), so each format's
markers or chunks are walked here; the walk never inflates image data and stops at the first limit.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

OFFERED = "PNG, JPEG, WebP or GIF"

MAX_DECODED_BYTES = 64 * 2**20  # samples a decoder produces: 4096 x 4096 8-bit RGBA; 16-bit samples, half the pixels
MAX_JPEG_SCANS = 100  # progressive encoders write 6-20 (libjpeg's default script: 10 for colour)
MAX_JPEG_SEGMENTS = 1000  # marker segments (tables, APPn, scans) in all
# 8x8 blocks walked, summed over the scans (~5 ns each, so ~80 ms): 61 walks of a 4096 x 4096 grey image;
# libjpeg's 10-scan script walks a 4096 x 4096 colour photo's blocks ~14 times (3.7 million)
MAX_JPEG_BLOCK_VISITS = 16_000_000
MAX_JPEG_COEF_BYTES = 96 * 2**20  # a multi-scan JPEG keeps every coefficient (2 bytes): 3 full-size components
MAX_PNG_CHUNKS = 4096  # a 5 MB PNG in libpng's 8 KB IDAT chunks has 640
MAX_PNG_INFLATED_META = 16  # compressed text/ICC chunks (zTXt, iTXt, iCCP), each ...
MAX_PNG_META_BYTES = 2**20  # ... inflating to at most this (Pillow's own MAX_TEXT_CHUNK)
MAX_GIF_BLOCKS = 4096  # extension sub-blocks before the first image (255 bytes each)
MAX_WEBP_CHUNKS = 4096
MAX_EXIF_BYTES = 65533  # a PNG's or WebP's EXIF is read (for its orientation) only up to a JPEG's APP1 size

# Chunks kept when a PNG is handed to the decoder: what makes its pixels (and EXIF orientation, when
# no larger than MAX_EXIF_BYTES); text, ICC profiles, animation and private chunks are dropped unread.
PNG_KEPT = {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND", b"eXIf"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# formats that are recognised but not offered: named in the answer
OTHER_FORMATS = [
    (re.compile(rb"^(II\*\x00|MM\x00\*)"), "TIFF"),
    (re.compile(rb"^BM"), "BMP"),
    (re.compile(rb"^\s*(<\?xml|<svg|<!DOCTYPE svg)", re.I), "SVG"),
    (re.compile(rb"^%PDF"), "PDF"),
    (re.compile(rb"^....ftyp(heic|heix|hevc|mif1|msf1|avif|avis)", re.S), "HEIC/AVIF"),
    (re.compile(rb"^\x00\x00\x01\x00"), "ICO"),
    (re.compile(rb"^8BPS"), "PSD"),
    (re.compile(rb"^\xff\x0a|^\x00\x00\x00\x0cJXL "), "JPEG XL"),
]


class BadImage(ValueError):
    """An unusable upload. ``code``: "bad_image" (unreadable), "unsupported_format" (a format the
    page does not offer), "too_large" (bytes, pixels or decoded bytes), "too_complex" (more scans,
    chunks or blocks than any real image has), "empty_image" (no digit found)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Limits:
    max_pixels: int = 4096 * 4096
    max_side: int = 4096
    max_decoded_bytes: int = MAX_DECODED_BYTES


@dataclass(frozen=True)
class Checked:
    """An upload that passed: its format (Pillow's name: "PNG", "JPEG", "WEBP", "GIF"), declared size
    and the bytes to hand to the decoder (a PNG without the ancillary chunks that are not read)."""

    format: str
    width: int
    height: int
    data: bytes
    exif: bytes = b""  # a WebP's EXIF chunk (decoded by OpenCV, which does not read it)


def check_upload(data: bytes, limits: Limits = Limits()) -> Checked:
    """The upload's format and declared size, or BadImage before anything is decoded."""
    for fmt, offered, check in _CHECKS:
        if offered(data):
            try:
                return check(data, limits)
            except (struct.error, IndexError) as exc:  # a header cut short
                raise _truncated(fmt) from exc
    head = data[:256]
    for pattern, name in OTHER_FORMATS:
        if pattern.match(head):
            raise BadImage("unsupported_format", f"{name} files are not accepted: send a {OFFERED} image.")
    raise BadImage("bad_image", f"The file is not a {OFFERED} image.")


def _size_checked(fmt: str, w: int, h: int, samples: int, limits: Limits) -> None:
    """Refuse a declared size over the limits; `samples`: bytes the decoder produces for it."""
    if w < 1 or h < 1:
        raise BadImage("bad_image", "The image has no pixels.")
    if w * h > limits.max_pixels or max(w, h) > limits.max_side:  # 4097x1 is no 4096x4096 image either
        raise BadImage(
            "too_large",
            f"The image is {w}x{h} pixels; at most {limits.max_side}x{limits.max_side} ({limits.max_pixels} pixels) are allowed.",
        )
    if samples > limits.max_decoded_bytes:
        raise BadImage(
            "too_large",
            f"The {fmt} image holds {samples / 2**20:.0f} MB of pixel data once decoded; at most "
            f"{limits.max_decoded_bytes / 2**20:.0f} MB are allowed (send it with 8 bits per sample).",
        )


def _truncated(fmt: str) -> BadImage:
    return BadImage("bad_image", f"The {fmt} file is truncated or damaged.")


# --------------------------------------------------------------------------- PNG

_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


def _check_png(data: bytes, limits: Limits) -> Checked:
    """Chunks walked (their count bounded), IHDR's size and sample depth checked, compressed
    metadata inflated only up to its limit, and the file rebuilt of the chunks that make pixels."""
    pos, n, inflated = 8, 0, 0
    kept = [PNG_SIGNATURE]
    width = height = 0
    while True:
        if pos + 8 > len(data):
            raise _truncated("PNG")
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > len(data) or length > 2**31 - 1:
            raise _truncated("PNG")
        n += 1
        if n > MAX_PNG_CHUNKS:
            raise BadImage("too_complex", f"The PNG file has more than {MAX_PNG_CHUNKS} chunks.")
        if n == 1:
            if kind != b"IHDR" or length != 13:
                raise BadImage("bad_image", "The PNG file does not start with its header (IHDR).")
            width, height, depth, ctype, compression, filtering, interlace = struct.unpack_from(">IIBBBBB", data, pos + 8)
            if depth not in _PNG_DEPTHS.get(ctype, ()) or compression or filtering or interlace > 1:
                raise BadImage("bad_image", "The PNG header is not valid.")
            samples = height * ((width * _PNG_CHANNELS[ctype] * depth + 7) // 8)  # (and a filter byte a row)
            _size_checked("PNG", width, height, samples, limits)
        elif kind in (b"zTXt", b"iTXt", b"iCCP"):
            body = data[pos + 8 : end - 4]
            packed = _png_compressed_part(kind, body)
            if packed is not None:
                inflated += 1
                if inflated > MAX_PNG_INFLATED_META:
                    raise BadImage(
                        "too_complex", f"The PNG file has more than {MAX_PNG_INFLATED_META} compressed text or profile chunks."
                    )
                _inflate_bounded(packed)
        if kind in PNG_KEPT and (kind != b"eXIf" or length <= MAX_EXIF_BYTES):
            kept.append(data[pos:end])
        if kind == b"IEND":
            break
        pos = end
    return Checked("PNG", width, height, b"".join(kept))


def _png_compressed_part(kind: bytes, body: bytes) -> bytes | None:
    """The zlib stream of a zTXt, iCCP or compressed iTXt chunk (None: uncompressed or unreadable)."""
    key_end = body.find(b"\0")
    if key_end < 0:
        return None
    if kind in (b"zTXt", b"iCCP"):
        return body[key_end + 2 :]
    if len(body) < key_end + 3 or body[key_end + 1] != 1:  # iTXt: compression flag
        return None
    lang_end = body.find(b"\0", key_end + 3)
    tkey_end = body.find(b"\0", lang_end + 1) if lang_end >= 0 else -1
    return body[tkey_end + 1 :] if tkey_end >= 0 else None


def _inflate_bounded(packed: bytes) -> None:
    """Refuse a compressed metadata chunk that inflates past MAX_PNG_META_BYTES (a zTXt bomb)."""
    z = zlib.decompressobj()
    try:
        inflated = len(z.decompress(packed, MAX_PNG_META_BYTES + 1))
    except zlib.error:
        return  # unreadable metadata is dropped with the chunk, like Pillow drops it
    if inflated > MAX_PNG_META_BYTES:
        raise BadImage("too_complex", f"A PNG text or profile chunk inflates to more than {MAX_PNG_META_BYTES // 2**20} MB.")


# --------------------------------------------------------------------------- JPEG

# A marker inside entropy-coded data: 0xFF followed by neither a stuffed 0x00, a restart marker nor fill.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_SOF_SUPPORTED = {0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive"}
_SOF_OTHER = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # lossless, hierarchical, arithmetic


def _check_jpeg(data: bytes, limits: Limits) -> Checked:
    """Segments walked from SOI to EOI (entropy-coded data skipped with one regular-expression search
    per scan): the frame header's size and components, and the scans: their count, the 8x8 blocks the
    decoder walks over all of them, and the coefficients a multi-scan file keeps in memory."""
    pos, segments, scans, visits = 2, 0, 0, 0
    frame: tuple[int, int, list[tuple[int, int, int]]] | None = None  # width, height, (id, h, v) per component
    while True:
        if pos + 2 > len(data):
            raise _truncated("JPEG")
        if data[pos] != 0xFF or data[pos + 1] == 0x00:  # stray bytes between segments: skipped, as libjpeg does
            pos = _next_marker(data, pos)
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # EOI: what follows (an MPO's second picture, a phone's trailer) is not read
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        if pos + 4 > len(data):
            raise _truncated("JPEG")
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if length < 2 or end > len(data):
            raise _truncated("JPEG")
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise BadImage("too_complex", f"The JPEG file has more than {MAX_JPEG_SEGMENTS} marker segments.")
        body = data[pos + 4 : end]
        if marker in _SOF_SUPPORTED:
            if frame is not None:
                raise BadImage("bad_image", "The JPEG file has two frame headers.")
            frame = _jpeg_frame(body, limits)
        elif marker in _SOF_OTHER:
            raise BadImage(
                "unsupported_format",
                f"Lossless, hierarchical and arithmetic-coded JPEGs are not accepted: send a {OFFERED} image.",
            )
        elif marker == 0xDA:
            if frame is None:
                raise BadImage("bad_image", "The JPEG file has a scan before its frame header.")
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise BadImage("too_complex", f"The JPEG file has more than {MAX_JPEG_SCANS} scans.")
            visits += _jpeg_scan_blocks(body, frame)
            if visits > MAX_JPEG_BLOCK_VISITS:
                raise BadImage("too_complex", "The JPEG file's scans walk the image too many times.")
            pos = _next_marker(data, end)  # past the scan's entropy-coded data
            continue
        pos = end
    if frame is None or scans == 0:
        raise _truncated("JPEG")
    width, height, comps = frame
    if scans > 1:
        coef = sum(_jpeg_blocks(width, height, comps, h, v) for _, h, v in comps) * 128
        if coef > MAX_JPEG_COEF_BYTES:
            raise BadImage(
                "too_large",
                f"The JPEG file needs {coef / 2**20:.0f} MB to decode; at most {MAX_JPEG_COEF_BYTES / 2**20:.0f} MB are allowed.",
            )
    return Checked("JPEG", width, height, data)


def _next_marker(data: bytes, pos: int) -> int:
    found = _JPEG_MARKER.search(data, pos)
    if found is None:
        raise _truncated("JPEG")
    return found.start()


def _jpeg_frame(body: bytes, limits: Limits) -> tuple[int, int, list[tuple[int, int, int]]]:
    if len(body) < 6:
        raise _truncated("JPEG")
    precision, height, width, count = struct.unpack_from(">BHHB", body)
    if precision != 8 or count not in (1, 3, 4) or len(body) < 6 + 3 * count:
        raise BadImage("unsupported_format", f"Only 8-bit greyscale, colour or CMYK JPEGs are accepted: send a {OFFERED} image.")
    comps = [(body[6 + 3 * i], body[7 + 3 * i] >> 4, body[7 + 3 * i] & 15) for i in range(count)]
    if any(not (1 <= h <= 4 and 1 <= v <= 4) for _, h, v in comps):
        raise BadImage("bad_image", "The JPEG frame header is not valid.")
    _size_checked("JPEG", width, height, 0, limits)  # decoded at reduced size: its output is small (see images.py)
    return width, height, comps


def _jpeg_blocks(width: int, height: int, comps: list[tuple[int, int, int]], h: int, v: int) -> int:
    """8x8 blocks of a component sampled h x v (of the frame's largest), padded to whole MCUs."""
    hmax, vmax = max(c[1] for c in comps), max(c[2] for c in comps)
    mcus_x, mcus_y = -(-width // (8 * hmax)), -(-height // (8 * vmax))
    return mcus_x * h * mcus_y * v


def _jpeg_scan_blocks(body: bytes, frame: tuple[int, int, list[tuple[int, int, int]]]) -> int:
    """Blocks one scan walks: those of each component it codes."""
    width, height, comps = frame
    if not body:
        raise _truncated("JPEG")
    ids = set(body[1 : 1 + 2 * body[0] : 2])
    return sum(_jpeg_blocks(width, height, comps, h, v) for cid, h, v in comps if cid in ids)


# --------------------------------------------------------------------------- GIF


def _check_gif(data: bytes, limits: Limits) -> Checked:
    """The logical screen and the first image's extent (which Pillow grows the screen to); the
    extension blocks before it counted. Only the first frame is decoded (1 byte per pixel)."""
    if len(data) < 13:
        raise _truncated("GIF")
    width, height, flags = struct.unpack_from("<HHB", data, 6)
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    blocks = 0
    while True:
        if pos >= len(data):
            raise _truncated("GIF")
        kind = data[pos]
        if kind == 0x21:  # extension: label, then sub-blocks up to an empty one
            pos += 2
            while True:
                if pos >= len(data):
                    raise _truncated("GIF")
                blocks += 1
                if blocks > MAX_GIF_BLOCKS:
                    raise BadImage("too_complex", f"The GIF file has more than {MAX_GIF_BLOCKS} blocks before its image.")
                size = data[pos]
                pos += 1 + size
                if size == 0:
                    break
        elif kind == 0x2C:
            if pos + 10 > len(data):
                raise _truncated("GIF")
            left, top, w, h = struct.unpack_from("<HHHH", data, pos + 1)
            if w < 1 or h < 1:
                raise BadImage("bad_image", "The GIF image has no pixels.")
            width, height = max(width, left + w), max(height, top + h)
            _size_checked("GIF", width, height, width * height, limits)
            return Checked("GIF", width, height, data)
        else:  # the trailer (0x3B) or anything else before an image
            raise BadImage("bad_image", "The GIF file has no image.")


# --------------------------------------------------------------------------- WebP


def _check_webp(data: bytes, limits: Limits) -> Checked:
    """RIFF chunks walked (counted): the canvas size from VP8X, or the one frame's VP8/VP8L header.
    Decoded to BGR(A) (4 bytes per pixel at most)."""
    pos, n = 12, 0
    size: tuple[int, int] | None = None
    exif = b""
    end_of_riff = min(len(data), 8 + struct.unpack_from("<I", data, 4)[0])
    while pos + 8 <= end_of_riff:
        kind, length = struct.unpack_from("<4sI", data, pos)
        body = data[pos + 8 : pos + 8 + min(length, 16)]
        n += 1
        if n > MAX_WEBP_CHUNKS:
            raise BadImage("too_complex", f"The WebP file has more than {MAX_WEBP_CHUNKS} chunks.")
        if size is None:
            if kind == b"VP8X" and len(body) >= 10:
                size = (1 + int.from_bytes(body[4:7], "little"), 1 + int.from_bytes(body[7:10], "little"))
            elif kind == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
                w, h = struct.unpack_from("<HH", body, 6)
                size = (w & 0x3FFF, h & 0x3FFF)
            elif kind == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
                bits = int.from_bytes(body[1:5], "little")
                size = (1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF))
            else:
                raise BadImage("bad_image", "The WebP file does not start with an image header.")
        if kind == b"EXIF" and length <= MAX_EXIF_BYTES:
            exif = data[pos + 8 : pos + 8 + length]
        pos += 8 + length + (length & 1)
    if size is None:
        raise _truncated("WebP")
    _size_checked("WebP", size[0], size[1], 4 * size[0] * size[1], limits)
    return Checked("WEBP", size[0], size[1], data, exif)


_CHECKS: list[tuple[str, Callable[[bytes], bool], Callable[[bytes, Limits], Checked]]] = [
    ("PNG", lambda data: data.startswith(PNG_SIGNATURE), _check_png),
    ("JPEG", lambda data: data.startswith(b"\xff\xd8\xff"), _check_jpeg),
    ("GIF", lambda data: data[:6] in (b"GIF87a", b"GIF89a"), _check_gif),
    ("WebP", lambda data: data[:4] == b"RIFF" and data[8:12] == b"WEBP", _check_webp),
]
