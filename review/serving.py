"""Which model the workers serve, and the admin's models page where staff see and switch it.

The choice is a `ServingModel` row (the newest wins), in the database because the admin and the
workers may share no filesystem and it must outlive a Redis restart; with no row,
`MODELS_DIR/current.json` names the model, as before. Workers read the choice every second from a
background thread and swap models between batches (worker.model_registry): no restart, and nothing
added to the live prediction path.

GET  /review/models/             the versions in MODELS_DIR: cards (figures, data, date), accuracy on reviewed drawings
POST /review/models/current      name=<model>: make it current
POST /review/models/roll-back    back to the model that was current before the last change

Switching needs the `recognizer.add_servingmodel` permission (superusers have it); viewing, staff who
may view drawings, view serving models or switch them (review.permissions).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from digits.inference import cards
from recognizer.models import ServingModel
from recognizer.selectors import serving_model_name
from review.dashboard import Score, reviewed_drawings, score_per_model
from review.permissions import SWITCH_MODELS, VIEW_MODELS, has_any, staff_page

log = logging.getLogger(__name__)

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # as digits.inference.predictor checks (it imports torch)
SWITCH_PERMISSION = SWITCH_MODELS[0]


class UnservableModel(ValueError):
    """Not a model the workers could load: no card, no weights, or weights that fail their sha256."""


# ---------------------------------------------------------------- read path


def models_dir() -> Path:
    return Path(settings.MODELS_DIR)


def serving_choice() -> ServingModel | None:
    """The newest choice made in the admin, if any."""
    return ServingModel.objects.order_by("-id").first()


def serving_previous_name(*, directory: Path | None = None) -> str | None:
    """What "roll back" goes back to: the model current before the newest choice (the choice before
    it, or current.json's when there was none); None when there is nothing different to go back to."""
    rows = list(ServingModel.objects.order_by("-id").values_list("name", flat=True)[:2])
    if not rows:
        return None
    try:
        previous = rows[1] if len(rows) == 2 else cards.current_model_name(directory or models_dir())
    except (OSError, ValueError, KeyError):
        return None
    return previous if previous != rows[0] else None


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

    @property
    def servable(self) -> bool:
        return not self.problem


def _figure(key: str, value: float) -> str:
    if "accuracy" in key or "ece" in key:
        return f"{value:.2%}"
    return f"{value:g} ms" if key.endswith("_ms") or "_ms_" in key else f"{value:g}"


def _version(path: Path) -> ModelVersion:
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
    )


def model_versions(*, directory: Path | None = None) -> list[ModelVersion]:
    """Every model card in the directory (current.json is the pointer, not a card), newest first;
    an unreadable card is listed with its problem rather than hidden."""
    out = []
    for path in sorted((directory or models_dir()).glob("*.json")):
        if path.name == "current.json":
            continue
        try:
            out.append(_version(path))
        except (OSError, ValueError, AttributeError) as exc:
            out.append(
                ModelVersion(
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
                    problem=f"unreadable card: {exc}",
                )
            )
    return sorted(out, key=lambda v: (v.created.timestamp() if v.created else 0.0, v.name), reverse=True)


def check_servable(name: str, *, directory: Path | None = None) -> None:
    """Raise UnservableModel unless the workers could load `name`: its card, its weights, their
    sha256 (checked here too, so a bad file is refused in the admin, not found by every worker)."""
    directory = directory or models_dir()
    if not MODEL_NAME.fullmatch(name) or not (directory / f"{name}.json").is_file():
        raise UnservableModel(f"no model {name!r} in {directory}")
    version = _version(directory / f"{name}.json")
    if version.problem:
        raise UnservableModel(f"{name}: {version.problem}")
    weights = version.card["weights"]
    digest = hashlib.sha256((directory / weights["file"]).read_bytes()).hexdigest()
    if digest != weights.get("sha256"):
        raise UnservableModel(f"{name}: the weights do not match the sha256 in its card")


# ---------------------------------------------------------------- write path


def serving_model_set(
    *, name: str, by: AbstractBaseUser | AnonymousUser | None = None, rolled_back: bool = False, directory: Path | None = None
) -> ServingModel:
    """Make `name` the model the workers serve (they switch within about a second)."""
    check_servable(name, directory=directory)
    row = ServingModel.objects.create(
        name=name, chosen_by=by if by is not None and by.is_authenticated else None, rolled_back=rolled_back
    )
    log.info("serving model set to %s by %s%s", name, by, " (roll back)" if rolled_back else "")
    return row


def serving_model_roll_back(*, by: AbstractBaseUser | AnonymousUser | None = None, directory: Path | None = None) -> ServingModel:
    """Serve again the model that was current before the newest choice (a second roll back undoes
    the first, like `cd -`)."""
    with transaction.atomic():
        previous = serving_previous_name(directory=directory)
        if previous is None:
            raise UnservableModel("there is no earlier model to roll back to")
        return serving_model_set(name=previous, by=by, rolled_back=True, directory=directory)


# ---------------------------------------------------------------- views


def _may_switch(request: HttpRequest) -> bool:
    return has_any(request, SWITCH_MODELS)


@staff_page(*VIEW_MODELS)
@require_GET
def models_page(request: HttpRequest) -> HttpResponse:
    try:
        current = serving_model_name()
    except (OSError, ValueError, KeyError):
        current = ""
    scores = score_per_model(reviewed_drawings())
    versions = model_versions()
    return render(
        request,
        "models/models.html",
        {
            **admin.site.each_context(request),
            "title": "Models",
            "rows": [(v, scores.get(v.name, Score(0, 0))) for v in versions],
            "current": current,
            "choice": serving_choice(),
            "history": ServingModel.objects.select_related("chosen_by")[:10],
            "previous": serving_previous_name(),
            "may_switch": _may_switch(request),
            "unlisted": [(m, scores[m]) for m in sorted(set(scores) - {v.name for v in versions})],
            "dashboard_url": reverse("review:dashboard"),
        },
    )


@staff_page(*SWITCH_MODELS)
@require_POST
def models_make_current(request: HttpRequest) -> HttpResponse:
    name = request.POST.get("name", "")
    try:
        serving_model_set(name=name, by=request.user)
    except UnservableModel as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Now current: {name}. The workers switch to it within a few seconds.")
    return HttpResponseRedirect(reverse("review:models"))


@staff_page(*SWITCH_MODELS)
@require_POST
def models_roll_back(request: HttpRequest) -> HttpResponse:
    try:
        row = serving_model_roll_back(by=request.user)
    except UnservableModel as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Rolled back to {row.name}: the workers switch to it within a few seconds.")
    return HttpResponseRedirect(reverse("review:models"))
