"""The model each worker process serves: loaded once per process, on start or first use."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from digits.predictor import Predictor

_lock = threading.Lock()
_loaded: tuple[int, Predictor] | None = None  # (pid, predictor): a forked child loads its own


def current_model_name(models_dir: Path | None = None) -> str:
    """Name of the model `models/current.json` marks as current (cheap: no torch import)."""
    path = Path(models_dir or settings.MODELS_DIR) / "current.json"
    return json.loads(path.read_text())["model"]


def get_predictor() -> Predictor:
    global _loaded
    with _lock:
        if _loaded is None or _loaded[0] != os.getpid():
            import torch

            from digits.predictor import load_predictor

            torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
            _loaded = (os.getpid(), load_predictor(Path(settings.MODELS_DIR)))
        return _loaded[1]
