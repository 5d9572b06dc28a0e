"""Write paths for stored drawings: store first (the person's data), predictions filled in after."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from recognizer.models import Drawing

log = logging.getLogger(__name__)

Enqueue = Callable[[list[int]], None]  # asks a worker to predict these rows


def content_hash(strokes: Sequence[Sequence[Sequence[float]]], canvas: Sequence[float], brush: float) -> str:
    """The same drawing (points, canvas, brush) always hashes the same: a resubmit is recognised."""
    canonical = json.dumps(
        [[[float(v) for v in p] for p in s] for s in strokes] + [[float(c) for c in canvas], float(brush)], separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def drawing_store(
    *,
    client_id: str,
    strokes: Sequence[Sequence[Sequence[float]]],
    canvas: Sequence[float],
    brush: float,
    label: int | None,
    enqueue: Enqueue | None = None,
) -> tuple[Drawing, bool]:
    """Save one submitted drawing at once, or find it again when the same drawing is resubmitted
    (the label is the person's latest word). Returns (row, created). The prediction is queued
    for a worker after the commit, so no worker looks for a row that is not there yet."""
    digest = content_hash(strokes, canvas, brush)
    try:
        with transaction.atomic():
            row, created = Drawing.objects.get_or_create(
                client_id=client_id,
                content_hash=digest,
                defaults={
                    "strokes": [[list(p) for p in s] for s in strokes],
                    "canvas_width": canvas[0],
                    "canvas_height": canvas[1],
                    "brush": brush,
                    "label": label,
                },
            )
            if not created and row.label != label:
                row.label = label
                row.save(update_fields=["label"])
            if enqueue is not None and created:
                pk = row.pk
                transaction.on_commit(lambda: enqueue_quietly(enqueue, [pk]))
    except IntegrityError:  # the same resubmit raced us: the row is there now
        row, created = Drawing.objects.get(client_id=client_id, content_hash=digest), False
    return row, created


def enqueue_quietly(enqueue: Enqueue, pks: list[int]) -> None:
    try:
        enqueue(pks)
    except Exception as exc:  # broker down: the workers' sweep finds the row later
        log.warning("could not queue the prediction of drawings %s: %s", pks, exc)


def drawing_record_prediction(
    *, pk: int, prediction: dict[str, Any], image28: bytes | None, png: bytes, now: datetime | None = None
) -> bool:
    """Fill in a stored drawing's prediction (once: a row already predicted is left alone)."""
    now = now or timezone.now()
    row = Drawing.objects.filter(pk=pk, predicted_at__isnull=True).only("created_at").first()
    if row is None:
        return False
    return bool(
        Drawing.objects.filter(pk=pk, predicted_at__isnull=True).update(
            image28=image28 if image28 is not None else bytes(784),
            png=png,
            predicted_digit=prediction["digit"],
            confidence=prediction["confidence"],
            probabilities=prediction["probabilities"],
            model_name=prediction["model"],
            uncertain=prediction["uncertain"],
            reason=prediction["reason"] or "",
            latency_ms=round((now - row.created_at).total_seconds() * 1000, 2),
            predicted_at=now,
        )
    )
