"""The model cards of MODELS_DIR as the staff side reads them: one card as a `ModelVersion` (what the
models page shows, in the same COLUMNS for every model), and whether the workers could serve a model
(`check_servable`, the switch's check: the weights, and the card's "serves", true unless it says false).
Files only, no database; the list of them is review.selectors.model_versions."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # as digits.inference.predictor checks (it imports torch)


# The models page's figure columns, the same for every model (a card without the figure leaves its
# cell blank): (key, header, where on the card).
COLUMNS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("test_accuracy", "MNIST test", ("metrics", "test_accuracy")),
    ("canvas_test_accuracy", "canvas-style test", ("metrics", "canvas_test_accuracy")),
    ("uploads", "uploads (mean of variants)", ("metrics", "uploads", "variants")),
    ("uji_dev_accuracy", "UJI pen digits", ("metrics", "uji_dev_accuracy")),
    ("test_ece", "calibration error (test)", ("metrics", "test_ece")),
    ("inference_median_ms_1_thread", "speed (1 thread)", ("metrics", "inference_median_ms_1_thread")),
    ("train_count", "training images", ("data", "train_count")),
)


class UnservableModel(ValueError):
    """Not a model the workers could load: no card, no weights, or weights that fail their sha256."""


def models_dir() -> Path:
    return Path(settings.MODELS_DIR)


@dataclass(frozen=True)
class ModelVersion:
    """One model card of MODELS_DIR, as the models page shows it."""

    name: str
    version: str
    created: datetime | None
    description: str
    parameters: int | None
    weights_bytes: int | None
    figures: list[tuple[str, str]]  # (metric, formatted value): the card's accuracies, shown first
    other_figures: list[tuple[str, str]]  # its other scalar figures (calibration, speed)
    data: list[tuple[str, str]]  # the card's data section, key by key
    command: str
    problem: str = ""  # why the workers could not serve it ("" if they can)
    card: dict[str, Any] = field(default_factory=dict, repr=False)
    serves: bool = True  # the card's "serves" (absent: true); false for a model kept for another use (a teacher)
    columns: list[tuple[str, str]] = field(default_factory=list)  # (key, value or "") for each of COLUMNS
    path: Path | None = field(default=None, repr=False)

    @property
    def servable(self) -> bool:
        return not self.problem

    @property
    def weights_check(self) -> str:
        """ "ok" when the weights match the card's sha256, else what is wrong ("" for an unreadable card)."""
        if self.path is None or not self.card:
            return ""
        if self.problem:
            return self.problem
        weights = self.card["weights"]
        digest = hashlib.sha256((self.path.parent / weights["file"]).read_bytes()).hexdigest()
        return "ok" if digest == weights.get("sha256") else "sha256 mismatch"


def _lookup(card: dict[str, Any], where: tuple[str, ...]) -> Any:
    value: Any = card
    for key in where:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _column(card: dict[str, Any], key: str, where: tuple[str, ...]) -> str:
    value = _lookup(card, where)
    if key == "uploads" and isinstance(value, dict):  # per upload variant: their mean accuracy
        scores = [v["accuracy"] for v in value.values() if isinstance(v, dict) and isinstance(v.get("accuracy"), (int, float))]
        value = sum(scores) / len(scores) if scores else None
        key = "uploads_accuracy"
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return ""
    return f"{value:,}" if key.endswith("_count") else _figure(key, value)


def _figure(key: str, value: float) -> str:
    if "accuracy" in key or "ece" in key:
        return f"{value:.2%}"
    return f"{value:g} ms" if key.endswith("_ms") or "_ms_" in key else f"{value:g}"


def model_version(path: Path) -> ModelVersion:
    """The card at `path`, with its problem when the workers could not serve it (raises OSError or
    ValueError when the file cannot be read as a card)."""
    card = json.loads(path.read_text())
    name = card.get("name") or path.stem
    weights = card.get("weights") or {}
    problem = ""
    if name != path.stem or not MODEL_NAME.fullmatch(name):
        problem = f"the card's name {name!r} is not its file's"
    elif not weights.get("file") or not (path.parent / weights["file"]).is_file():
        problem = "no weights file"
    try:
        created = datetime.fromisoformat(card["created"]) if card.get("created") else None
    except (TypeError, ValueError):
        created = None
    metrics = card.get("metrics") or {}
    scalars = [(k, _figure(k, v)) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    data = [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in (card.get("data") or {}).items()]
    arch = card.get("architecture") or {}
    return ModelVersion(
        name=name,
        version=str(card.get("version", "")),
        created=created,
        description=str(arch.get("description", "")),
        parameters=arch.get("parameters"),
        weights_bytes=weights.get("bytes"),
        figures=[f for f in scalars if f[0].endswith("accuracy")],
        other_figures=[f for f in scalars if not f[0].endswith("accuracy")],
        data=data,
        command=str((card.get("training") or {}).get("command", "")),
        problem=problem,
        card=card,
        serves=card.get("serves", True) is not False,
        columns=[(key, _column(card, key, where)) for key, _, where in COLUMNS],
        path=path,
    )


def unreadable_version(path: Path, error: Exception) -> ModelVersion:
    """A card that could not be read, listed with its problem rather than hidden."""
    return ModelVersion(
        name=path.stem,
        version="",
        created=None,
        description="",
        parameters=None,
        weights_bytes=None,
        figures=[],
        other_figures=[],
        data=[],
        command="",
        problem=f"unreadable card: {error}",
        columns=[(key, "") for key, _, _ in COLUMNS],
    )


def check_servable(name: str, *, directory: Path | None = None) -> None:
    """Raise UnservableModel unless the workers could load `name`: its card, its weights, their
    sha256 (checked here too, so a bad file is refused in the admin, not found by every worker)."""
    directory = directory or models_dir()
    if not MODEL_NAME.fullmatch(name) or not (directory / f"{name}.json").is_file():
        raise UnservableModel(f"no model {name!r} in {directory}")
    version = model_version(directory / f"{name}.json")
    if version.problem:
        raise UnservableModel(f"{name}: {version.problem}")
    if not version.serves:
        raise UnservableModel(f'{name} is not meant to serve (its card says "serves": false)')
    weights = version.card["weights"]
    digest = hashlib.sha256((directory / weights["file"]).read_bytes()).hexdigest()
    if digest != weights.get("sha256"):
        raise UnservableModel(f"{name}: the weights do not match the sha256 in its card")
