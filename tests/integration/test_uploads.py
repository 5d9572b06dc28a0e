"""POST /api/predict with the images people actually upload: tight crops, tiny images, either
polarity (MNIST test digits, through the real stack)."""

import io
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

pytestmark = pytest.mark.integration
MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="module")
def digits(mnist_dir):
    """The first MNIST test digit of each class the model reads right directly: (digit, image)."""
    from digits.data.mnist import load_split
    from digits.inference.predictor import load_predictor

    images, labels = load_split(mnist_dir, "test")
    images, labels = images[:200], labels[:200]
    right = load_predictor(MODELS).predict(images / 255.0).argmax(axis=1) == labels
    return [(d, images[int(np.flatnonzero((labels == d) & right)[0])]) for d in range(10)]


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def tight(a: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(a)
    return a[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def post(stack, data: bytes) -> requests.Response:
    return requests.post(f"{stack.url}/api/predict", files={"image": ("digit.png", data, "image/png")}, timeout=30)


VARIANTS = {
    "crop0-light-on-dark": lambda a: tight(a),
    "crop0-dark-on-light": lambda a: 255 - tight(a),
    "28px-dark-on-light": lambda a: 255 - a,
    "12px-dark-on-light": lambda a: 255 - np.asarray(Image.fromarray(a).resize((12, 12), Image.Resampling.BOX)),
    "8px-scan-filling-the-frame": lambda a: 255 - np.asarray(Image.fromarray(tight(a)).resize((8, 8), Image.Resampling.BOX)),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_uploads_are_read_not_refused(stack, digits, variant):
    read = []
    for digit, image in digits:
        resp = post(stack, png(VARIANTS[variant](image)))
        assert resp.status_code == 200, (digit, resp.text)  # never "empty_image" for a digit
        body = resp.json()
        assert len(body["image"]) == 1048 and sum(body["probabilities"]) == pytest.approx(1.0, abs=1e-4)
        read.append(body["digit"] == digit)
    # 8 px keeps little of a digit: most, not all, are still readable
    assert sum(read) >= (8 if variant.startswith("8px") else 10), read


def test_a_blank_upload_is_still_empty(stack):
    resp = post(stack, png(np.full((40, 40), 250, np.uint8)))
    assert resp.status_code == 400 and resp.json()["code"] == "empty_image"
