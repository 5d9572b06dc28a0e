"""Model cards and the `current.json` pointer in a models directory (no torch import)."""

from __future__ import annotations

import json
from pathlib import Path


def current_model_name(models_dir: Path) -> str:
    """The model named in ``<models_dir>/current.json``."""
    return json.loads((Path(models_dir) / "current.json").read_text())["model"]


def weights_path(models_dir: Path, card: dict) -> Path:
    """The weights file a card names, which must be a file directly in ``models_dir``: a card that
    names ``../x.pt``, an absolute path or a link out of the directory is refused (ValueError)."""
    models_dir = Path(models_dir)
    name = str(card["weights"]["file"])
    path = models_dir / name
    if Path(name).name != name or name in ("", ".", "..") or path.resolve().parent != models_dir.resolve():
        raise ValueError(f"the card's weights file {name!r} is not a file in {models_dir}")
    return path
