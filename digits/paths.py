"""Where the checkout, its models and the shared data live: defined once, imported by every layer."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO_ROOT / "models"
MNIST_DIR = REPO_ROOT.parent / "shared" / "data" / "mnist"
UJI_DIR = REPO_ROOT.parent / "shared" / "data" / "uji-pen"
EVAL_DIR = REPO_ROOT / "docs" / "eval"  # evaluation reports
# Rendered training sets (canvas styles, stroke styles, upload renditions), keyed by their inputs' hash.
CACHE_DIR = Path(os.environ.get("DIGITS_CACHE_DIR", REPO_ROOT / ".cache" / "canvas_style"))
