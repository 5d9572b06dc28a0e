"""Plain functions behind the tasks: input -> 28x28 image -> probabilities. No Celery here."""
from __future__ import annotations

import base64
from typing import Any, Sequence

import numpy as np

from digits.images import decode_upload, image_to_mnist
from digits.refusal import assess
from digits.render import drawing_png, strokes_to_mnist


def to_bytes28(image: np.ndarray) -> bytes:
    """Float 28x28 in [0, 1] -> 784 bytes (255 = ink): what the model sees and the page shows."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8).tobytes()


def from_bytes28(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8).reshape(28, 28).astype(np.float32) / 255.0


def prepare_strokes(strokes: Sequence[Sequence[Sequence[float]]], canvas: Sequence[float], brush: float) -> bytes | None:
    """Strokes -> model input bytes, or None for a drawing without ink."""
    image = strokes_to_mnist(strokes, (canvas[0], canvas[1]), brush)
    return None if image is None else to_bytes28(image)


def prepare_upload(data: bytes, *, max_bytes: int, max_pixels: int) -> bytes:
    """Uploaded PNG/JPEG -> model input bytes; raises digits.images.BadImage."""
    return to_bytes28(image_to_mnist(decode_upload(data, max_bytes=max_bytes, max_pixels=max_pixels)))


def render_png(strokes: Sequence[Sequence[Sequence[float]]], canvas: Sequence[float], brush: float) -> str:
    return base64.b64encode(drawing_png(strokes, (canvas[0], canvas[1]), brush)).decode()


def classify(predictor: Any, image28: bytes) -> dict[str, Any]:
    """One image through the model: the digit, its confidence, all ten probabilities, and whether
    the drawing looks like no digit at all ("uncertain", with a "reason"; see digits.refusal)."""
    image = from_bytes28(image28)
    probs = predictor.predict(image[None])[0]
    digit = int(np.argmax(probs))
    uncertain, reason = assess(image, probs)
    return {
        "digit": digit,
        "confidence": round(float(probs[digit]), 6),
        "probabilities": [round(float(p), 6) for p in probs],
        "model": predictor.name,
        "uncertain": uncertain,
        "reason": reason,
    }


def saliency_map(predictor: Any, image28: bytes, digit: int) -> str:
    """Base64 of 784 bytes: how much each pixel drove the score of `digit` (255 = most)."""
    return base64.b64encode(to_bytes28(predictor.saliency(from_bytes28(image28), digit))).decode()


def empty_prediction(model: str) -> dict[str, Any]:
    return {"digit": None, "confidence": None, "probabilities": None, "model": model,
            "uncertain": False, "reason": None}
