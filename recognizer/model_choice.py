"""The model the workers should serve (the wanted model): what /healthz and the page name, and what
each worker's model watcher (worker.model_registry) switches to."""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.db import Error as DatabaseError  # InterfaceError (a closed connection) included

from digits.inference import cards

log = logging.getLogger(__name__)


def wanted_model_name() -> str:
    """The admin's choice, else current.json's (also when the database cannot be read: a worker starts
    and serves, and its watcher corrects it once it can)."""
    from recognizer.selectors import serving_model_name  # the ORM only after Django is set up

    try:
        return serving_model_name(directory=Path(settings.MODELS_DIR))
    except DatabaseError as exc:
        log.warning("the serving choice could not be read (%s): current.json names the model", exc)
        return cards.current_model_name(Path(settings.MODELS_DIR))
