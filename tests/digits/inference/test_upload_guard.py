"""Bounded work per upload (digits.inference.upload_guard through decode_upload): hostile files are refused from
their headers, before any pixel is decoded; what real people upload is decoded."""

from __future__ import annotations

import contextlib
import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageChops, ImageDraw

from digits.data.hostile_corpus import corpus, digit_image, encode, jpeg_segments, png_chunk, png_of_rows, scan_bomb
from digits.inference import upload_guard
from digits.inference.images import decode_upload
from digits.inference.upload_guard import BadImage, Limits, check_upload

HOSTILE = {h.name: h for h in corpus()}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_each_hostile_file_is_refused_from_its_headers(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    hostile = HOSTILE[name]
    # refused before any decoder sees it: Pillow is never asked to open the file
    monkeypatch.setattr(Image, "open", lambda *a, **k: pytest.fail("a decoder was asked to open it"))
    with pytest.raises(BadImage) as err:
        decode_upload(hostile.data)
    assert err.value.code == hostile.code and err.value.message, (name, err.value.code, err.value.message)


def test_the_corpus_is_what_it_claims_to_be() -> None:
    """Without the guard, each bomb is a file that Pillow opens (the bombs are real, not broken files)."""
    bomb = Image.open(io.BytesIO(HOSTILE["scan-bomb.jpg"].data))
    assert bomb.size == (4096, 4096) and sum(m == 0xDA for m, _, _ in jpeg_segments(HOSTILE["scan-bomb.jpg"].data)) > 3000
    rgba = Image.open(io.BytesIO(HOSTILE["rgba16-4096.png"].data))
    assert rgba.size == (4096, 4096) and len(HOSTILE["rgba16-4096.png"].data) < 200_000
    flood = Image.open(io.BytesIO(HOSTILE["chunk-flood.png"].data))
    assert flood.size == (64, 64) and HOSTILE["chunk-flood.png"].data.count(b"prVt") == 300_000
    assert Image.open(io.BytesIO(HOSTILE["image.tiff"].data)).format == "TIFF"


# --------------------------------------------------------------------------- each limit at its edge


def test_jpeg_scan_count_limit() -> None:
    small = scan_bomb(repeats=0, side=64)  # 6 scans of its own
    scans = sum(m == 0xDA for m, _, _ in jpeg_segments(small))
    assert check_upload(scan_bomb(repeats=upload_guard.MAX_JPEG_SCANS - scans, side=64)).format == "JPEG"
    with pytest.raises(BadImage) as err:
        check_upload(scan_bomb(repeats=upload_guard.MAX_JPEG_SCANS - scans + 1, side=64))
    assert err.value.code == "too_complex" and "scans" in err.value.message


def test_jpeg_block_visits_limit() -> None:
    """Fewer scans than the count limit, but over a large image: the blocks walked are what count."""
    per_scan = (1024 // 8) ** 2
    allowed = upload_guard.MAX_JPEG_BLOCK_VISITS // per_scan - 6  # 6 scans of its own, each over every block
    if allowed > upload_guard.MAX_JPEG_SCANS:  # the scan limit would decide: use a bigger image
        per_scan = (4096 // 8) ** 2
        allowed = upload_guard.MAX_JPEG_BLOCK_VISITS // per_scan - 6
        side = 4096
    else:
        side = 1024
    assert check_upload(scan_bomb(repeats=allowed, side=side)).width == side
    with pytest.raises(BadImage) as err:
        check_upload(scan_bomb(repeats=allowed + 1, side=side))
    assert err.value.code == "too_complex"


def _png_with_chunks(extra: int) -> bytes:
    good = encode(digit_image(32), "PNG")
    cut = good.index(b"IDAT") - 4
    return good[:cut] + png_chunk(b"prVt", b"") * extra + good[cut:]


def test_png_chunk_count_limit() -> None:
    base = _png_with_chunks(0).count(b"IDAT") + 2  # IHDR, IDAT(s), IEND
    assert decode_upload(_png_with_chunks(upload_guard.MAX_PNG_CHUNKS - base)).size == (32, 32)
    with pytest.raises(BadImage) as err:
        decode_upload(_png_with_chunks(upload_guard.MAX_PNG_CHUNKS - base + 1))
    assert err.value.code == "too_complex"


def test_png_decoded_bytes_limit() -> None:
    """16-bit RGBA: 8 bytes a pixel against the 64 MB bound; the same pixel count at 8 bits passes."""
    side = 2896  # 2896 x 2896 x 8 bytes: just under 64 MB
    assert check_upload(png_of_rows(side, side, 16, 6, bytes(1 + side * 8))).width == side
    with pytest.raises(BadImage) as err:
        check_upload(png_of_rows(side + 1, side + 1, 16, 6, bytes(1 + (side + 1) * 8)))
    assert err.value.code == "too_large" and "MB" in err.value.message
    assert check_upload(png_of_rows(4096, 4096, 8, 6, bytes(1 + 4096 * 4))).width == 4096  # 8-bit RGBA at the cap
    with pytest.raises(BadImage):
        check_upload(png_of_rows(4096, 4096, 8, 6, bytes(1 + 4096 * 4)), Limits(max_decoded_bytes=32 * 2**20))


def _ztxt(inflated: int) -> bytes:
    return png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"x" * inflated))


def test_png_compressed_text_is_bounded_and_not_decoded() -> None:
    good = encode(digit_image(32), "PNG")
    cut = good.index(b"IDAT") - 4
    ok = good[:cut] + _ztxt(upload_guard.MAX_PNG_META_BYTES) * upload_guard.MAX_PNG_INFLATED_META + good[cut:]
    checked = check_upload(ok)
    assert b"zTXt" not in checked.data  # dropped unread: the decoder never inflates it
    assert decode_upload(ok).size == (32, 32)
    for bad in (
        good[:cut] + _ztxt(upload_guard.MAX_PNG_META_BYTES + 1) + good[cut:],
        good[:cut] + _ztxt(10) * (upload_guard.MAX_PNG_INFLATED_META + 1) + good[cut:],
    ):
        with pytest.raises(BadImage) as err:
            check_upload(bad)
        assert err.value.code == "too_complex"


def test_gif_frame_beyond_the_screen_counts() -> None:
    """Pillow grows a GIF's screen to its first frame's extent: the extent is what is checked."""
    data = bytearray(encode(digit_image(64), "GIF"))
    image_descriptor = data.index(b"\x2c\x00\x00\x00\x00")
    struct.pack_into("<HH", data, image_descriptor + 1, 4090, 0)  # the 64 px frame placed at x = 4090
    with pytest.raises(BadImage) as err:
        check_upload(bytes(data))
    assert err.value.code == "too_large" and "4154x64" in err.value.message


def test_other_jpeg_kinds_are_unsupported() -> None:
    data = bytearray(encode(digit_image(64), "JPEG"))
    sof = next(start for m, start, _ in jpeg_segments(bytes(data)) if m == 0xC0)
    data[sof + 1] = 0xC3  # lossless
    with pytest.raises(BadImage) as err:
        check_upload(bytes(data))
    assert err.value.code == "unsupported_format"


# --------------------------------------------------------------------------- what people upload


def _photo(w: int, h: int) -> Image.Image:
    """A colour 'photo': shaded paper, a dark digit, sensor noise (so that it compresses like one)."""
    grad = Image.linear_gradient("L").resize((w, h)).point(lambda v: 210 - v // 4)
    paper = Image.merge("RGB", (grad, grad, grad.point(lambda v: v * 9 // 10)))
    img = ImageChops.add(paper, Image.effect_noise((w, h), 6).convert("RGB"), 1.0, -128)
    ImageDraw.Draw(img).line(
        [(w * 0.3, h * 0.3), (w * 0.7, h * 0.3), (w * 0.45, h * 0.8)], fill=(30, 30, 40), width=max(2, w // 40)
    )
    return img


def _screenshot(w: int, h: int) -> Image.Image:
    """A screen: flat panels, lines of 'text', a drawn digit."""
    img = Image.new("RGBA", (w, h), (246, 246, 248, 255))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, w, 60], fill=(40, 44, 52, 255))
    for y in range(120, h - 40, 28):
        draw.line([(80, y), (80 + (y * 37) % (w // 2), y)], fill=(90, 90, 100, 255), width=6)
    draw.line([(w * 0.6, h * 0.3), (w * 0.8, h * 0.3), (w * 0.65, h * 0.8)], fill=(0, 0, 0, 255), width=w // 60)
    return img


@pytest.fixture(scope="module")
def photo4096() -> Image.Image:
    return _photo(4096, 3072)


def test_phone_photo_jpeg_up_to_4096_px(photo4096: Image.Image) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # shot in portrait
    data = encode(photo4096, "JPEG", quality=92, exif=exif)
    assert 2**20 < len(data) <= 5 * 2**20
    out = decode_upload(data)
    assert out.mode == "L" and out.size == (1536, 2048)  # decoded at half size, then turned upright


def test_progressive_jpegs_pass(photo4096: Image.Image) -> None:
    for kw in ({}, {"subsampling": 0}):  # 4:2:0, and 4:4:4 (every coefficient of three full-size components kept)
        data = encode(photo4096, "JPEG", quality=75, progressive=True, **kw)
        assert decode_upload(data).size == (2048, 1536), kw
    square = encode(_photo(4096, 4096), "JPEG", quality=75, progressive=True, subsampling=0)
    assert decode_upload(square).size == (1024, 1024)


def test_mpo_from_a_phone_decodes_its_first_picture() -> None:
    first, second = digit_image(200, "RGB"), Image.new("RGB", (200, 200), "black")
    buf = io.BytesIO()
    first.save(buf, "MPO", save_all=True, append_images=[second])
    out = decode_upload(buf.getvalue())
    assert out.size == (200, 200) and np.asarray(out)[0, 0] > 200  # the white first picture, not the black one


def test_png_screenshots_webp_and_gif_pass() -> None:
    assert decode_upload(encode(_screenshot(3840, 2160), "PNG")).size == (3840, 2160)
    ink = digit_image(600, "RGB")
    for data in (
        encode(ink, "WEBP", quality=80),
        encode(ink.convert("RGBA"), "WEBP", lossless=True),
        encode(ink, "GIF"),
        encode(ink.convert("L"), "PNG"),
        encode(ink.convert("I;16"), "PNG"),
    ):
        out = decode_upload(data)
        assert out.mode == "L" and out.size == (600, 600)
        arr = np.asarray(out)
        assert arr[5, 5] > 200 and arr.min() < 60  # white paper, dark ink
    frames = [digit_image(300, "RGB"), Image.new("RGB", (300, 300), "black")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert np.asarray(decode_upload(buf.getvalue()))[5, 5] > 200  # its first frame
    apng = io.BytesIO()
    frames[0].save(apng, "PNG", save_all=True, append_images=frames[1:])
    assert np.asarray(decode_upload(apng.getvalue()))[5, 5] > 200  # an animated PNG's default image


def test_transparent_gif_and_webp_are_on_white() -> None:
    rgba = np.zeros((120, 120, 4), np.uint8)  # black everywhere, only the digit opaque
    rgba[..., 3] = 255 - np.asarray(digit_image(120))
    img = Image.fromarray(rgba, "RGBA")
    for data in (encode(img, "WEBP", lossless=True), encode(img.convert("P"), "GIF", transparency=0)):
        arr = np.asarray(decode_upload(data))
        assert arr[2, 2] == 255, arr[2, 2]


def _samples() -> list[tuple[str, bytes]]:
    """Real encodings of each offered format, as different encoders write them."""
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
    out = [
        (f"jpeg {kw}", encode(noise, "JPEG", **kw))
        for kw in (
            {},
            {"progressive": True},
            {"optimize": True, "quality": 95},
            {"subsampling": 0, "progressive": True},
            {"quality": 30},
        )
    ]
    out.append(("jpeg grey", encode(noise.convert("L"), "JPEG", progressive=True)))
    for flags in ([cv2.IMWRITE_JPEG_RST_INTERVAL, 1], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1, cv2.IMWRITE_JPEG_RST_INTERVAL, 3]):
        out.append((f"opencv jpeg {flags}", cv2.imencode(".jpg", np.asarray(noise), flags)[1].tobytes()))
    out += [
        ("png rgb", encode(noise, "PNG")),
        ("png palette", encode(noise.convert("P"), "PNG")),
        ("png 1-bit", encode(noise.convert("1"), "PNG")),
        ("opencv png", cv2.imencode(".png", np.asarray(noise))[1].tobytes()),
        ("webp lossy", encode(noise, "WEBP")),
        ("webp lossless", encode(noise.convert("RGBA"), "WEBP", lossless=True)),
        ("gif", encode(noise, "GIF")),
    ]
    return out


def test_real_encodings_pass_and_broken_ones_are_bad_images() -> None:
    """Every encoding passes the guard with its true size; cut short or with bytes changed, the
    guard answers with a BadImage or lets it through to the decoder (never another exception)."""
    rng = np.random.default_rng(1)
    for name, data in _samples():
        checked = check_upload(data)
        assert (checked.width, checked.height) == (128, 96), name
        assert decode_upload(data).size == (128, 96), name
        for _ in range(60):
            broken = bytearray(data[: int(rng.integers(1, len(data)))])
            for i in rng.integers(0, len(broken), size=int(rng.integers(0, 4))):
                broken[int(i)] = int(rng.integers(0, 256))
            with contextlib.suppress(BadImage):
                decode_upload(bytes(broken))


def test_webp_orientation_and_animation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    for img in (Image.new("RGB", (60, 30), "white"), Image.new("RGBA", (60, 30), (255, 255, 255, 128))):
        assert decode_upload(encode(img, "WEBP", exif=exif, lossless=True)).size == (30, 60), img.mode
    frames = [digit_image(200, "RGB"), Image.new("RGB", (200, 200), "black")]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=100)
    out = np.asarray(decode_upload(buf.getvalue()))
    assert out[2, 2] > 200 and out.min() < 60  # the first frame


def test_png_exif_orientation_is_kept_within_its_size() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    data = encode(Image.new("L", (60, 30), 255), "PNG", exif=exif)
    assert decode_upload(data).size == (30, 60)
    exif[0x010E] = "x" * (upload_guard.MAX_EXIF_BYTES + 1)  # an image description past the limit: EXIF dropped
    assert decode_upload(encode(Image.new("L", (60, 30), 255), "PNG", exif=exif)).size == (60, 30)
