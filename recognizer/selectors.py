"""Reads of the live side's data that other parts need (the workers, the review app)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from digits.inference import cards
from recognizer.models import ServingModel


def serving_model_name(*, directory: Path | None = None) -> str:
    """The model the workers should serve: the admin's newest choice, else current.json's.
    One indexed query; raises the database's error when it cannot be read."""
    name = ServingModel.objects.order_by("-id").values_list("name", flat=True).first()
    return name or cards.current_model_name(directory or Path(settings.MODELS_DIR))
