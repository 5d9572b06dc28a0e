"""The hostile-upload corpus (digits.data.hostile_corpus) against the real stack: each file answered 400
with its JSON error code, the preprocess worker still the same process, and the formats the page
offers still read."""

from __future__ import annotations

import io

import pytest
import requests
from PIL import Image

from digits.data.hostile_corpus import corpus, digit_image, encode

pytestmark = pytest.mark.integration

CONTENT_TYPES = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "svg": "image/svg+xml",
    "tiff": "image/tiff",
    "gif": "image/gif",
}


def post(stack, name: str, data: bytes) -> requests.Response:
    ctype = CONTENT_TYPES.get(name.rsplit(".", 1)[-1], "application/octet-stream")
    return requests.post(f"{stack.url}/api/predict", files={"image": (name, data, ctype)}, timeout=30)


def test_each_hostile_file_is_refused_with_its_code(stack) -> None:
    workers = {name: proc.pid for name, proc in stack.procs if name.startswith("worker-")}
    answers = {}
    for hostile in corpus():
        resp = post(stack, hostile.name, hostile.data)
        body = resp.json()
        answers[hostile.name] = (resp.status_code, body.get("type"), body.get("code"), body.get("message"))
    expected = {h.name: (400, "error", h.code) for h in corpus()}
    assert {name: a[:3] for name, a in answers.items()} == expected, answers
    assert all(a[3] for a in answers.values()), answers  # each with a message saying why
    assert "PNG, JPEG, WebP or GIF" in answers["image.svg"][3] and "PNG, JPEG, WebP or GIF" in answers["image.tiff"][3]
    # refused by the workers' checks, not by a worker dying on them
    assert {name: proc.pid for name, proc in stack.procs if name.startswith("worker-")} == workers
    assert all(proc.poll() is None for _, proc in stack.procs)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_each_offered_format_is_read(stack, fmt: str) -> None:
    ink = digit_image(200, "RGB")
    resp = post(stack, f"digit.{fmt.lower()}", encode(ink, fmt))
    assert resp.status_code == 200, resp.text
    assert resp.json()["digit"] == 7


def test_a_progressive_photo_is_read(stack) -> None:
    """A progressive JPEG has several scans: within the limits, it is decoded like any other."""
    img = digit_image(1600, "RGB")
    data = encode(img, "JPEG", quality=85, progressive=True)
    assert Image.open(io.BytesIO(data)).info.get("progressive")
    resp = post(stack, "photo.jpg", data)
    assert resp.status_code == 200, resp.text
    assert resp.json()["digit"] == 7
