"""Hostile uploads, made by code (no binaries in the repository): files that cost a decoder far more
than their size, and formats the page does not offer. The tests (tests/digits/test_upload_guard.py,
tests/integration/test_hostile_uploads.py) and bench/hostile_uploads.py send each of them.

Each entry: a file name, the bytes and the error code the service answers it with. Built once per
process (the 16-bit RGBA PNG compresses 128 MB of samples: ~0.3 s).
"""

from __future__ import annotations

import functools
import io
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw


@dataclass(frozen=True)
class Hostile:
    name: str
    data: bytes
    code: str  # the error code answered
    what: str


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_of_rows(width: int, height: int, depth: int, color_type: int, row: bytes, *, before_idat: bytes = b"") -> bytes:
    """A PNG whose every row is `row` (filter byte first), compressed as one stream."""
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + before_idat + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def digit_image(side: int = 112, mode: str = "L") -> Image.Image:
    """A dark 7 on white: something every format can carry."""
    img = Image.new("L", (side, side), 255)
    ImageDraw.Draw(img).line(
        [(side * 0.2, side * 0.2), (side * 0.8, side * 0.2), (side * 0.4, side * 0.9)], fill=0, width=max(1, side // 10)
    )
    return img.convert(mode)


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each segment after SOI; a scan's end includes its entropy-coded data."""
    out, pos = [], 2
    while pos < len(data):
        marker = data[pos + 1]
        if marker == 0xD9:
            out.append((marker, pos, pos + 2))
            break
        end = pos + 2 + struct.unpack_from(">H", data, pos + 2)[0]
        if marker == 0xDA:
            found = _MARKER.search(data, end)
            end = found.start() if found else len(data)
        out.append((marker, pos, end))
        pos = end
    return out


def scan_bomb(repeats: int = 3000, side: int = 4096) -> bytes:
    """A side x side grey progressive JPEG with its first AC scan (and the Huffman table before it)
    repeated: each copy (56 bytes) makes the decoder walk every block of the image again."""
    data = encode(Image.new("L", (side, side), 230), "JPEG", progressive=True, quality=90)
    segs = jpeg_segments(data)
    scans = [i for i, (m, _, _) in enumerate(segs) if m == 0xDA]
    first_ac = scans[1]
    start = segs[first_ac - 1][1] if segs[first_ac - 1][0] == 0xC4 else segs[first_ac][1]
    end = segs[first_ac][2]
    return data[:end] + data[start:end] * repeats + data[end:]


def chunk_flood(chunks: int = 300_000) -> bytes:
    """A small PNG with `chunks` empty private chunks before its image data (Pillow reads each in Python)."""
    good = encode(digit_image(64), "PNG")
    flood = png_chunk(b"prVt", b"") * chunks
    cut = good.index(b"IDAT") - 4
    return good[:cut] + flood + good[cut:]


def rgba16(side: int = 4096) -> bytes:
    """A side x side 16-bit RGBA PNG of zeros: 128 MB of samples in ~130 KB."""
    return png_of_rows(side, side, 16, 6, b"\x00" * (1 + side * 8))


def dimension_bomb_png(side: int = 65535) -> bytes:
    """A 1-bit PNG declaring side x side pixels, with 16 rows of data."""
    z = zlib.compressobj(9)
    idat = z.compress(b"\x00" * (1 + (side + 7) // 8) * 16) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def dimension_bomb_jpeg(side: int = 65000) -> bytes:
    """A small JPEG whose frame header claims side x side pixels."""
    data = bytearray(encode(digit_image(64), "JPEG"))
    sof = next(start for m, start, _ in jpeg_segments(bytes(data)) if m == 0xC0)
    struct.pack_into(">HH", data, sof + 5, side, side)
    return bytes(data)


def ztxt_bomb(inflated: int = 256 * 2**20) -> bytes:
    """A small PNG with a zTXt chunk of `inflated` bytes of zeros (compressed ~1000:1)."""
    z = zlib.compressobj(9)
    block = b"\x00" * 2**20
    packed = b"".join(z.compress(block) for _ in range(inflated // 2**20)) + z.flush()
    good = encode(digit_image(64), "PNG")
    cut = good.index(b"IDAT") - 4
    return good[:cut] + png_chunk(b"zTXt", b"Comment\x00\x00" + packed) + good[cut:]


def webp_dimension_bomb(side: int = 16384) -> bytes:
    """A WebP whose extended header (VP8X) declares a side x side canvas."""
    real = encode(digit_image(64, "RGB"), "WEBP", lossless=True)
    vp8x = riff_chunk(b"VP8X", b"\x00\x00\x00\x00" + (side - 1).to_bytes(3, "little") * 2)
    body = b"WEBP" + vp8x + real[12:]
    return b"RIFF" + struct.pack("<I", len(body)) + body


def riff_chunk(kind: bytes, data: bytes) -> bytes:
    return kind + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) & 1 else b"")


def truncated_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    noisy = np.clip(np.asarray(digit_image(1024), np.float32) + rng.normal(0, 20, (1024, 1024)), 0, 255)
    data = encode(Image.fromarray(noisy.astype(np.uint8)), "JPEG", quality=90)
    return data[: len(data) // 2]


def truncated_png() -> bytes:
    data = encode(digit_image(1024, "RGB"), "PNG")
    return data[: len(data) // 2]


SVG = (
    b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="112" height="112">'
    b'<path d="M20 20 H90 L45 100" stroke="black" stroke-width="9" fill="none"/></svg>'
)

BUILDERS: list[tuple[str, Callable[[], bytes], str, str]] = [
    ("scan-bomb.jpg", scan_bomb, "too_complex", "4096x4096 grey progressive JPEG, first AC scan repeated 3,000 times"),
    ("chunk-flood.png", chunk_flood, "too_complex", "64x64 PNG with 300,000 empty chunks"),
    ("rgba16-4096.png", rgba16, "too_large", "4096x4096 16-bit RGBA PNG (128 MB of samples)"),
    ("dimension-bomb.png", dimension_bomb_png, "too_large", "PNG declaring 65535x65535"),
    ("dimension-bomb.jpg", dimension_bomb_jpeg, "too_large", "JPEG declaring 65000x65000"),
    ("dimension-bomb.webp", webp_dimension_bomb, "too_large", "WebP declaring a 16384x16384 canvas"),
    ("ztxt-bomb.png", ztxt_bomb, "too_complex", "PNG with a zTXt chunk inflating to 256 MB"),
    ("truncated.jpg", truncated_jpeg, "bad_image", "1024x1024 JPEG cut in half"),
    ("truncated.png", truncated_png, "bad_image", "1024x1024 PNG cut in half"),
    ("image.svg", lambda: SVG, "unsupported_format", "SVG"),
    ("image.tiff", lambda: encode(digit_image(112), "TIFF"), "unsupported_format", "TIFF"),
    ("empty", lambda: b"", "bad_image", "zero bytes"),
]


@functools.cache
def corpus() -> tuple[Hostile, ...]:
    return tuple(Hostile(name, build(), code, what) for name, build, code, what in BUILDERS)
