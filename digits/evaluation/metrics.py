"""The figures a model's predictions give: accuracy, per-class accuracy, confusion matrix (as text
and as a PNG) and expected calibration error.

numpy and PIL only (no torch), so that anything that shows these figures (the review app's
dashboard, the training programs' calibration) can import them cheaply.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ECE_BINS = 15


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the confidence-weighted gap |accuracy - confidence| over ``bins`` equal-width bins."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, n: int = 10) -> np.ndarray:
    """(n, n) counts: rows = true digit, columns = predicted digit."""
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (labels.astype(np.int64), predicted.astype(np.int64)), 1)
    return cm


def uncalibrated(probs: np.ndarray, temperature: float) -> np.ndarray:
    """The probabilities the model would give at temperature 1 (softmax(T * log p))."""
    z = np.log(np.clip(probs, 1e-300, None)) * temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def summarize(probs: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> dict:
    """Count, accuracy, errors, per-class accuracy, ECE and confusion of ``probs`` (N, 10) against
    ``labels``; with a ``temperature`` other than 1, also the ECE the model had before calibration."""
    pred = probs.argmax(axis=1)
    cm = confusion_matrix(labels, pred)
    per_class = {str(d): round(float(cm[d, d] / max(cm[d].sum(), 1)), 6) for d in range(10)}
    out = {
        "count": len(labels),
        "accuracy": round(float((pred == labels).mean()), 6),
        "errors": int((pred != labels).sum()),
        "per_class_accuracy": per_class,
        "ece": round(expected_calibration_error(probs, labels), 6),
        "confusion": cm.tolist(),
    }
    if temperature != 1.0:
        out["ece_uncalibrated"] = round(expected_calibration_error(uncalibrated(probs, temperature), labels), 6)
    return out


def format_confusion(cm: np.ndarray | list) -> str:
    cm = np.asarray(cm)
    lines = ["true\\pred " + " ".join(f"{d:>5}" for d in range(10))]
    for d in range(10):
        lines.append(f"{d:>9} " + " ".join(f"{v:>5}" for v in cm[d]))
    return "\n".join(lines)


def confusion_png(
    cm: np.ndarray | list, title: str, cell: int = 44, *, rows: str = "true digit", error_gain: float = 20.0
) -> bytes:
    """The confusion matrix drawn with PIL, as PNG bytes: counts in cells, shade ~ row share (errors in red,
    their share amplified by `error_gain` to be seen). `rows` names what the rows count."""
    cm = np.asarray(cm)
    font = ImageFont.load_default()
    margin, top = 40, 60
    size = (margin + 10 * cell + 12, top + 10 * cell + 28)
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    draw.text((8, 6), title, fill="black", font=font)
    draw.text((margin + 4 * cell, top - 36), "predicted", fill="black", font=font)
    draw.text((4, top + 10 * cell + 8), f"rows: {rows}", fill="black", font=font)
    rows = cm.sum(axis=1, keepdims=True).clip(min=1)
    share = cm / rows
    for i in range(10):
        draw.text((margin - 14, top + i * cell + cell // 2 - 5), str(i), fill="black", font=font)
        draw.text((margin + i * cell + cell // 2 - 3, top - 16), str(i), fill="black", font=font)
        for j in range(10):
            x0, y0 = margin + j * cell, top + i * cell
            s = float(share[i, j])
            if i == j:
                shade = (int(255 - 175 * s), int(255 - 75 * s), int(255 - 175 * s))  # green
            else:
                s = min(1.0, s * error_gain)
                shade = (255, int(255 - 200 * s), int(255 - 200 * s))
            draw.rectangle((x0, y0, x0 + cell - 1, y0 + cell - 1), fill=shade, outline=(200, 200, 200))
            if cm[i, j]:
                text = str(int(cm[i, j]))
                draw.text((x0 + cell // 2 - 3 * len(text), y0 + cell // 2 - 5), text, fill="black", font=font)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()
