"""The shipped current model: integrity check, probabilities, accuracy on real MNIST test images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from digits.data.mnist import load_split
from digits.inference.predictor import ModelIntegrityError, load_predictor

REPO = Path(__file__).resolve().parents[3]
MODELS = REPO / "models"
DATA_DIR = REPO.parent / "shared/data/mnist"


@pytest.fixture(scope="module")
def predictor():
    return load_predictor(MODELS)


def test_loads_current_model(predictor) -> None:
    current = json.loads((MODELS / "current.json").read_text())["model"]
    assert predictor.name == current == predictor.card["name"]
    assert predictor.card["weights"]["bytes"] <= 2 * 1024 * 1024
    assert predictor.card["metrics"]["test_accuracy"] >= 0.99


def test_probabilities(predictor) -> None:
    rng = np.random.default_rng(0)
    probs = predictor.predict(rng.random((3, 28, 28), dtype=np.float32))
    assert probs.shape == (3, 10) and probs.dtype == np.float64
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-9)
    assert predictor.predict(np.zeros((28, 28), np.float32)).shape == (1, 10)
    with pytest.raises(ValueError, match="expected images of shape"):
        predictor.predict(np.zeros((2, 27, 28), np.float32))


def test_tampered_weights_are_rejected(tmp_path: Path, predictor) -> None:
    name = predictor.name
    for suffix in (".json", ".pt"):
        shutil.copy(MODELS / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    (tmp_path / "current.json").write_text(json.dumps({"model": name}))
    assert load_predictor(tmp_path).name == name  # the untouched copy loads
    data = bytearray((tmp_path / f"{name}.pt").read_bytes())
    data[-100] ^= 0xFF
    (tmp_path / f"{name}.pt").write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        load_predictor(tmp_path, name)


@pytest.mark.usefixtures("mnist_dir")  # fails, never skips, without the data
def test_accuracy_on_first_500_test_images(predictor) -> None:
    images, labels = load_split(DATA_DIR, "test")
    probs = predictor.predict(images[:500].astype(np.float32) / 255.0)
    accuracy = float((probs.argmax(1) == labels[:500]).mean())
    assert accuracy >= 0.98, accuracy


def test_saliency_highlights_the_ink_that_decides(predictor):
    images, _ = load_split(DATA_DIR, "test")
    image = images[0].astype(np.float32) / 255.0
    digit = int(predictor.predict(image).argmax())
    heat = predictor.saliency(image, digit)
    assert heat.shape == (28, 28) and heat.max() == pytest.approx(1.0) and heat.min() >= 0
    ink, background = image > 0.5, image < 0.05
    assert heat[ink].mean() > 5 * heat[background].mean()


def test_a_cards_weights_file_must_lie_in_the_models_directory(tmp_path) -> None:
    from digits.inference.cards import weights_path

    (tmp_path / "models").mkdir()
    (tmp_path / "outside.pt").write_bytes(b"x")
    (tmp_path / "models" / "link.pt").symlink_to(tmp_path / "outside.pt")
    assert weights_path(tmp_path / "models", {"weights": {"file": "m.pt"}}) == tmp_path / "models" / "m.pt"
    for name in ("../outside.pt", str(tmp_path / "outside.pt"), "sub/../../outside.pt", "link.pt", "..", ""):
        with pytest.raises(ValueError, match="is not a file in"):
            weights_path(tmp_path / "models", {"weights": {"file": name}})
