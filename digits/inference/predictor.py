"""Loading a trained model (weights + model card) and batched inference."""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from digits.inference import cards
from digits.inference.cards import current_model_name
from digits.inference.network import DEFAULT_CHANNELS, DigitNet, fuse_for_inference

CHUNK = 256  # images per forward pass in predict()
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class ModelIntegrityError(RuntimeError):
    """The weights file does not match the sha256 recorded in its model card."""


class Predictor:
    """A loaded model: ``predict`` maps (N,28,28) float images in [0,1] to (N,10) probabilities."""

    def __init__(self, name: str, card: dict, model: DigitNet) -> None:
        self.name = name
        self.card = card
        self._model = fuse_for_inference(model)  # eval-only, BatchNorm folded

    def predict(self, images: np.ndarray) -> np.ndarray:
        """(N,28,28) or (28,28) float in [0,1], ink = 1 -> (N,10) float64 probabilities (rows sum to 1)."""
        arr = np.asarray(images, dtype=np.float32)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3 or arr.shape[1:] != (28, 28):
            raise ValueError(f"expected images of shape (N, 28, 28), got {arr.shape}")
        x = torch.from_numpy(np.ascontiguousarray(arr)).unsqueeze(1)
        with torch.inference_mode():
            # moderate chunks keep the activations in cache: faster than one huge batch
            if len(x) <= CHUNK:  # the serving case: one image
                logits = self._model(x) if len(x) else torch.zeros(0, 10)
            else:
                logits = torch.cat([self._model(chunk) for chunk in x.split(CHUNK)])
            return torch.softmax(logits.double(), dim=1).numpy()

    def saliency(self, image: np.ndarray, digit: int) -> np.ndarray:
        """(28,28) float in [0,1]: how much each pixel's ink drove the score of ``digit``."""
        return self.saliency_batch(np.asarray(image, dtype=np.float32).reshape(1, 28, 28), [digit])[0]

    def saliency_batch(self, images: np.ndarray, digits: Sequence[int]) -> np.ndarray:
        """(N,28,28) float in [0,1]: for each image, how much each pixel's ink drove its digit's score.

        Gradient x input of each image's digit logit (positive evidence only), lightly smoothed and
        scaled so each map's strongest pixel is 1. One backward pass for the batch: the images do
        not interact (BatchNorm is folded), so the gradient of the summed logits is each one's own.
        """
        arr = np.array(images, dtype=np.float32).reshape(-1, 1, 28, 28)
        if len(arr) != len(digits):
            raise ValueError(f"{len(arr)} images but {len(digits)} digits")
        if not len(arr):
            return np.zeros((0, 28, 28), dtype=np.float32)
        x = torch.from_numpy(arr).requires_grad_(True)
        with torch.enable_grad():
            logits = self._model(x)
            logits[torch.arange(len(arr)), torch.as_tensor(list(digits))].sum().backward()
        assert x.grad is not None  # backward() filled it
        evidence = (x.grad * x).detach().clamp_(min=0)
        smooth = torch.nn.functional.avg_pool2d(evidence, 3, stride=1, padding=1)[:, 0].numpy()
        peak = smooth.reshape(len(arr), -1).max(axis=1)[:, None, None]
        return np.divide(smooth, peak, out=np.zeros_like(smooth), where=peak > 0).astype(np.float32)


def load_predictor(models_dir: Path, name: str | None = None) -> Predictor:
    """Load ``<models_dir>/<name>.pt`` after checking it against the sha256 in ``<name>.json``.

    ``name=None`` loads the current model (``current.json``).
    """
    return Predictor(*load_model(models_dir, name))


def load_model(models_dir: Path, name: str | None = None) -> tuple[str, dict, DigitNet]:
    """(name, card, DigitNet in eval mode) of a checked model; see :func:`load_predictor`."""
    models_dir = Path(models_dir)
    name = name or current_model_name(models_dir)
    if not MODEL_NAME.fullmatch(name):
        raise ValueError(f"invalid model name {name!r}")
    card = json.loads((models_dir / f"{name}.json").read_text())
    weights_path = cards.weights_path(models_dir, card)  # confined to models_dir
    data = weights_path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != card["weights"]["sha256"]:
        raise ModelIntegrityError(
            f"{weights_path}: sha256 {digest} does not match the model card ({card['weights']['sha256']}); "
            "the weights file is corrupt or was replaced without updating the card"
        )
    model = DigitNet(channels=card["architecture"].get("channels", DEFAULT_CHANNELS))
    model.load_state_dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
    return name, card, model.eval()
