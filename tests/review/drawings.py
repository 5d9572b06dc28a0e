"""Stored drawings for the review tests: `make` one (predicted unless told otherwise), read it back
`fresh`, and the admin's list of them (CHANGELIST)."""

from __future__ import annotations

import itertools
from typing import Any

from django.utils import timezone

from recognizer.models import Drawing
from review.thumbnails import image28_png

CHANGELIST = "/admin/recognizer/drawing/"
_ids = itertools.count()


def make(**fields: Any) -> Drawing:
    """A stored drawing; predicted (with a 28x28 image and a PNG) unless told otherwise."""
    n = next(_ids)
    image = bytes((n * 7 + i) % 256 for i in range(784))
    defaults: dict[str, Any] = {
        "client_id": f"d{n}",
        "content_hash": f"h{n}",
        "strokes": [[[10.0, 10.0], [60.0, 90.0]]],
        "canvas_width": 280.0,
        "canvas_height": 280.0,
        "brush": 16.0,
        "image28": image,
        "png": image28_png(image),
        "predicted_digit": 3,
        "confidence": 0.9,
        "model_name": "cnn-v6",
        "predicted_at": timezone.now(),
    }
    defaults.update(fields)
    return Drawing.objects.create(**defaults)


def fresh(row: Drawing) -> Drawing:
    return Drawing.objects.get(pk=row.pk)
