"""The model each worker process serves: loaded once per process, on start or first use."""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from digits import cards

if TYPE_CHECKING:
    from digits.predictor import Predictor

_lock = threading.Lock()
_loaded: tuple[int, Predictor] | None = None  # (pid, predictor): a forked child loads its own


def current_model_name() -> str:
    """Name of the model `models/current.json` marks as current (cheap: no torch import)."""
    return cards.current_model_name(Path(settings.MODELS_DIR))


def get_predictor() -> Predictor:
    global _loaded
    with _lock:
        if _loaded is None or _loaded[0] != os.getpid():
            import torch

            from digits.predictor import load_predictor

            torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
            _loaded = (os.getpid(), load_predictor(Path(settings.MODELS_DIR)))
        return _loaded[1]
