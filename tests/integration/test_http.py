"""POST /api/predict and /healthz on the real stack."""

import io
import struct
import zlib

import pytest
import requests
from PIL import Image, ImageDraw

from tests.support.digit_paths import digit_strokes

pytestmark = pytest.mark.integration


def digit_photo(digit: int, *, dark_on_light: bool, fmt: str = "PNG", size: int = 400) -> bytes:
    """A digit drawn with a pen on paper-ish background (not MNIST-normalised)."""
    ink, paper = (30, 235) if dark_on_light else (235, 20)
    img = Image.new("L", (size, size), paper)
    draw = ImageDraw.Draw(img)
    for stroke in digit_strokes(digit, scale=size / 280 * 0.8, offset=(size * 0.1, size * 0.1)):
        draw.line(stroke, fill=ink, width=size // 22, joint="curve")
    return _encoded(img.convert("RGB"), fmt)


def _encoded(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def post(stack, data: bytes | None, name: str = "digit.png", field: str = "image") -> requests.Response:
    files = {field: (name, data, "application/octet-stream")} if data is not None else None
    return requests.post(f"{stack.url}/api/predict", files=files, data={} if files else {"x": "1"}, timeout=30)


@pytest.mark.parametrize(("digit", "dark", "fmt"), [(3, True, "PNG"), (7, False, "PNG"), (5, True, "JPEG"), (8, False, "JPEG")])
def test_uploaded_images_are_read_right(stack, digit, dark, fmt):
    resp = post(stack, digit_photo(digit, dark_on_light=dark, fmt=fmt))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["digit"] == digit, body
    assert sum(body["probabilities"]) == pytest.approx(1.0, abs=1e-4) and body["model"]
    assert len(body["image"]) == 1048 and len(body["saliency"]) == 1048 and body["latency_ms"] > 0


def test_uploads_work_while_a_socket_is_open_in_the_same_server(stack, ws):
    """The page always holds a socket: an upload's reply must still reach the waiting view."""
    ws.prediction_for(ws.stream(digit_strokes(1), drawing="open"))
    resp = post(stack, digit_photo(4, dark_on_light=True))
    assert resp.status_code == 200, resp.text
    assert resp.json()["digit"] == 4
    final, _ = ws.prediction_for(ws.stream(digit_strokes(7), drawing="still-open"))
    assert final["digit"] == 7


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR declaring a huge image, then a little data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")


def bomb() -> bytes:
    """A ~50 KB PNG that inflates to 15000x15000 pixels (225 MB)."""
    row = b"\x00" + b"\x00" * 15000
    raw = zlib.compress(row * 15000, 9)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", 15000, 15000, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


BAD_UPLOADS = [
    ("not-an-image.png", b"hello, I am text" * 10, "bad_image"),
    ("empty.png", b"", "bad_image"),
    ("truncated.png", digit_photo(2, dark_on_light=True)[:300], "bad_image"),
    ("huge.png", png_header_only(20000, 20000), "too_large"),
    ("bomb.png", bomb(), "too_large"),
    ("big.bin", b"\x00" * (6 * 2**20), "too_large"),
    ("blank.png", _encoded(Image.new("L", (200, 200), 255)), "empty_image"),
]


@pytest.mark.parametrize(("name", "data", "code"), BAD_UPLOADS)
def test_bad_uploads_get_400_with_a_json_error(stack, name, data, code):
    resp = post(stack, data, name)
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["type"] == "error" and body["code"] == code and body["message"]


def test_missing_field_and_wrong_method(stack):
    assert post(stack, None).json()["code"] == "no_image"
    assert requests.get(f"{stack.url}/api/predict", timeout=10).status_code == 405


def test_healthz_reports_every_part_and_no_worker_died_of_bad_uploads(stack):
    for name, data, code in BAD_UPLOADS:  # sent here too: this test does not rely on running after theirs
        assert post(stack, data, name).json()["code"] == code
    body = requests.get(f"{stack.url}/healthz", timeout=10).json()
    assert body["status"] == "ok" and body["redis"] is True and body["database"] is True
    assert body["workers"] == 2 and body["workers_per_queue"] == {"preprocess": 1, "inference": 1}
    assert body["model"]
    assert all(proc.poll() is None for _, proc in stack.procs)
