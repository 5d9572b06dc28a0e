"""Stored drawings for the export tests: `make` one (predicted, labelled and reviewed unless told
otherwise), a `pending` one (still waiting for its prediction), `some_drawings` of every kind an export
tells apart, and `load` an export's three files back."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
from django.utils import timezone

from recognizer.models import Drawing
from tests.support.digit_paths import digit_strokes


def make(n: int, **fields: Any) -> Drawing:
    image = bytes((n * 31 + i * 7) % 256 for i in range(784))
    defaults: dict[str, Any] = {
        "client_id": f"e{n}",
        "content_hash": f"h{n}",
        "strokes": digit_strokes(n % 10),
        "canvas_width": 280.0,
        "canvas_height": 300.0,
        "brush": 14.5,
        "image28": image,
        "png": b"\x89PNG",
        "predicted_digit": n % 10,
        "confidence": 0.5 + n / 100,
        "model_name": "cnn-v6",
        "predicted_at": timezone.now(),
        "label": n % 10,
        "reviewed_at": timezone.now(),
    }
    defaults.update(fields)
    return Drawing.objects.create(**defaults)


def pending(n: int, **fields: Any) -> Drawing:
    return make(n, image28=None, png=None, predicted_digit=None, confidence=None, predicted_at=None, **fields)


def some_drawings() -> dict[str, Drawing]:
    return {
        "person": make(1, label=1),  # the person's label, let stand by a reviewer
        "relabelled": make(2, label=2, review_label=7, reviewed_at=timezone.now()),
        "pending": make(3, label=3, image28=None, png=None, predicted_digit=None, confidence=None, predicted_at=None),
        "excluded": make(4, label=4, excluded=True, reviewed_at=timezone.now()),
        "unlabelled": make(5, label=None),
        "reviewer_only": make(6, label=None, review_label=0, reviewed_at=timezone.now()),
        "spam": make(7, label=7, reviewed_at=None),  # the person's word alone: never reviewed
    }


def load(out: Path) -> tuple[dict[str, np.ndarray], list[dict], list[dict]]:
    with np.load(out) as npz:
        arrays = {k: npz[k] for k in npz.files}
    lines = [json.loads(line) for line in out.with_suffix(".strokes.jsonl").read_text().splitlines()]
    with out.with_suffix(".csv").open(newline="") as f:
        manifest = list(csv.DictReader(f))
    return arrays, lines, manifest
