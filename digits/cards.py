"""Model cards and the `current.json` pointer in a models directory (no torch import)."""
from __future__ import annotations

import json
from pathlib import Path


def current_model_name(models_dir: Path) -> str:
    """The model named in ``<models_dir>/current.json``."""
    return json.loads((Path(models_dir) / "current.json").read_text())["model"]
