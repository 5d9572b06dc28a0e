"""Write paths for stored drawings."""
from __future__ import annotations

from typing import Any, Sequence

from recognizer.models import Drawing


def drawing_store(
    *,
    client_id: str,
    strokes: Sequence[Sequence[Sequence[float]]],
    canvas: Sequence[float],
    brush: float,
    image28: bytes,
    png: bytes,
    prediction: dict[str, Any],
    label: int | None,
) -> Drawing:
    """Save one submitted drawing with the prediction made for exactly these strokes."""
    return Drawing.objects.create(
        client_id=client_id,
        strokes=[[list(p) for p in s] for s in strokes],
        canvas_width=canvas[0],
        canvas_height=canvas[1],
        brush=brush,
        image28=image28,
        png=png,
        predicted_digit=prediction["digit"],
        confidence=prediction["confidence"],
        probabilities=prediction["probabilities"],
        model_name=prediction["model"],
        label=label,
        latency_ms=prediction["latency_ms"],
    )
