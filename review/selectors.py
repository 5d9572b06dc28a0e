"""The staff side's reads, none of which writes: the admin list's filters and counts, the triage queue,
the dashboard's scores (per model, per week) and confusion counts, the serving models list, what an
export or an import starts from.

At a million drawings and more (docs/scale.md) each is written so that an index answers it: the
filters read the indexes of recognizer.models, the queue and its count the partial index
drawing_triage, the scores the partial indexes drawing_scored(_reviewed) (index-only scans)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypedDict

from django.db import OperationalError, connections, transaction
from django.db.models import Count, F, Max, Q, QuerySet
from django.db.models.functions import TruncWeek

from digits.inference import cards
from recognizer.models import EFFECTIVE_LABEL, SCORED, TRIAGE_ORDER, TRIAGE_ROWS, Drawing, ServingModel
from recognizer.selectors import serving_model_name
from review.model_cards import ModelVersion, model_version, models_dir, unreadable_version

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations  # django-stubs' own: a dev requirement, not the service's

    from digits.data import uji

DIGITS = range(10)
# The queue's "remaining" is counted exactly up to this many rows (an index-only scan of the partial
# index drawing_triage that stops there: a few ms), and is PostgreSQL's estimate above it.
COUNT_UP_TO = 10_000
Order = Literal["confidence", "oldest"]
# (value, title, lower bound inclusive, upper bound exclusive) of the model's confidence
CONFIDENCE_BANDS = [
    ("lt50", "below 50%", 0.0, 0.5),
    ("50-80", "50–80%", 0.5, 0.8),
    ("80-95", "80–95%", 0.8, 0.95),
    ("95-99", "95–99%", 0.95, 0.99),
    ("99+", "99% and more", 0.99, 1.01),
]


# ---------------------------------------------------------------- counting without a scan


def planner_rows(queryset: QuerySet[Any]) -> int | None:
    """PostgreSQL's estimate of how many rows `queryset` returns (EXPLAIN: no row is read), or None
    on another database."""
    if connections[queryset.db].vendor != "postgresql":
        return None
    plan = json.loads(queryset.explain(format="json"))
    return int(plan[0]["Plan"]["Plan Rows"])


def exact_count_within(queryset: QuerySet[Any], milliseconds: int) -> int | None:
    """COUNT(*) of `queryset` if PostgreSQL finishes it within `milliseconds`, else None (the
    statement is cancelled: a count that would scan a large table gives up instead)."""
    connection = connections[queryset.db]
    try:
        with transaction.atomic(using=queryset.db), connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('statement_timeout')")
            before = cursor.fetchone()[0]
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(milliseconds)])
            count = queryset.count()
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [before])
            return count
    except OperationalError:  # cancelled by the statement timeout
        return None


# ---------------------------------------------------------------- the admin's list and its filters


class EffectiveLabel(TypedDict):
    """What drawings_with_effective_label annotates a drawing with (its type for django-stubs)."""

    effective: int | None


# Drawings annotated with `effective` (the scores and the confusion counts read it)
DrawingsWithEffective: TypeAlias = "QuerySet[WithAnnotations[Drawing, EffectiveLabel]]"


def drawings_with_effective_label(drawings: QuerySet[Drawing] | None = None) -> DrawingsWithEffective:
    """Rows annotated with `effective` (what `Drawing.effective_label` says, for filters and sorting)."""
    return (Drawing.objects.all() if drawings is None else drawings).annotate(effective=EFFECTIVE_LABEL)


def drawing_list(drawings: QuerySet[Drawing]) -> DrawingsWithEffective:
    """The admin's list: no strokes or images, the reviewer joined, the label used annotated."""
    return drawings_with_effective_label(drawings.defer("strokes", "probabilities", "image28").select_related("reviewed_by"))


def drawings_search(drawings: QuerySet[Drawing], term: str) -> QuerySet[Drawing]:
    """An exact client id, or an id: the unique (client_id, content_hash) index and the primary key."""
    match = Q(client_id=term)
    if term.isdigit() and int(term) < 2**63:
        match |= Q(pk=int(term))
    return drawings.filter(match)


def drawings_by_prediction(drawings: QuerySet[Drawing], *, waiting: bool) -> QuerySet[Drawing]:
    """Those still waiting for their prediction, or those predicted."""
    return drawings.filter(predicted_at__isnull=waiting)


def drawings_by_review(drawings: QuerySet[Drawing], *, reviewed: bool) -> QuerySet[Drawing]:
    return drawings.filter(reviewed_at__isnull=not reviewed)


def drawings_by_label_source(drawings: QuerySet[Drawing], which: str) -> QuerySet[Drawing]:
    """`which`: "yes" (any label), "person", "reviewer" or "no" (no label at all); else all of them."""
    match which:
        case "yes":
            return drawings.filter(Q(label__isnull=False) | Q(review_label__isnull=False))
        case "person":
            return drawings.filter(label__isnull=False)
        case "reviewer":
            return drawings.filter(review_label__isnull=False)
        case "no":
            return drawings.filter(label__isnull=True, review_label__isnull=True)
    return drawings


def drawings_by_effective_label(drawings: QuerySet[Drawing], digit: int) -> QuerySet[Drawing]:
    """The label training uses (the reviewer's, else the person's) is `digit` (index drawing_effective)."""
    return drawings.alias(eff=EFFECTIVE_LABEL).filter(eff=digit)


def drawings_by_agreement(drawings: QuerySet[Drawing], *, right: bool) -> QuerySet[Drawing]:
    """Labelled and predicted, the prediction the label used (right) or another digit."""
    both = drawings.alias(eff=EFFECTIVE_LABEL).filter(eff__isnull=False, predicted_digit__isnull=False)
    return both.filter(eff=F("predicted_digit")) if right else both.exclude(eff=F("predicted_digit"))


def drawings_by_confidence(drawings: QuerySet[Drawing], band: str) -> QuerySet[Drawing]:
    """The drawings in one of CONFIDENCE_BANDS (by its value); all of them for another value."""
    for value, _, low, high in CONFIDENCE_BANDS:
        if band == value:
            return drawings.filter(confidence__gte=low, confidence__lt=high)
    return drawings


def drawings_of_model(drawings: QuerySet[Drawing], name: str) -> QuerySet[Drawing]:
    """The model's drawings, up to its newest (one lookup in drawing_model_id): a model's drawings
    come in a run of ids, and newest first the list would otherwise walk the primary key past
    every later model's drawings (the planner takes them to be spread evenly)."""
    newest = Drawing.objects.filter(model_name=name).aggregate(newest=Max("pk"))["newest"]
    if newest is None:
        return drawings.none()
    return drawings.filter(model_name=name, pk__lte=newest)


def model_names() -> list[str]:
    """The models drawings may name: the model cards in MODELS_DIR and the models ever chosen in the
    admin (no SELECT DISTINCT over the drawings)."""
    names = {v.name for v in model_versions()} | set(ServingModel.objects.values_list("name", flat=True))
    return sorted(names)


# ---------------------------------------------------------------- the triage queue


def drawings_to_review() -> QuerySet[Drawing]:
    """The rows of the partial index drawing_triage (models.TRIAGE_ROWS)."""
    return Drawing.objects.filter(TRIAGE_ROWS)


def remaining_to_review() -> tuple[int, bool]:
    """(how many drawings wait for review, whether that is an estimate): counted exactly up to
    COUNT_UP_TO (a count that stops there), else PostgreSQL's statistics for the table times the share
    the planner expects (EXPLAIN, no row read). On another database, counted exactly."""
    exact = drawings_to_review().order_by()[: COUNT_UP_TO + 1].count()
    if exact <= COUNT_UP_TO:
        return exact, False
    estimate = planner_rows(drawings_to_review().order_by())
    if estimate is None:
        return drawings_to_review().count(), False
    return max(estimate, exact), True


def review_queue(*, order: Order, after: str | None, limit: int) -> tuple[Sequence[Drawing], str | None]:
    """One page of unreviewed drawings in `order`, after the cursor a previous page returned (raises
    ValueError for a cursor that is not one).

    A keyset cursor rather than an offset: the rows reviewed meanwhile leave the queue, which would
    shift an offset past drawings nobody has seen."""
    qs = drawings_to_review().defer("png", "probabilities")
    if order == "confidence":  # drawing_triage's order: an index scan that stops after `limit` rows
        qs = qs.alias(sure=TRIAGE_ORDER)
        if after:
            sure, pk = _cursor(after, float)
            # sure >= the cursor's: where the index scan starts (the OR alone would be a filter on
            # every row before the cursor)
            qs = qs.filter(Q(sure__gt=sure) | Q(sure=sure, pk__gt=pk), sure__gte=sure)
        # the rows are Drawings annotated with sure_value (a list of those is a Sequence[Drawing])
        page = list(qs.annotate(sure_value=F("sure")).order_by("sure", "pk")[:limit])
        return page, (f"{page[-1].sure_value!r}:{page[-1].pk}" if len(page) == limit else None)
    if after:
        qs = qs.filter(pk__gt=_cursor(after, int)[1])
    rows = list(qs.order_by("pk")[:limit])
    return rows, (f"0:{rows[-1].pk}" if len(rows) == limit else None)


def _cursor(after: str, kind: type) -> tuple[Any, int]:
    value, _, pk = after.rpartition(":")
    return kind(value), int(pk)


# ---------------------------------------------------------------- scores (the dashboard, the models page)


@dataclass(frozen=True)
class Score:
    count: int
    right: int

    @property
    def accuracy(self) -> float | None:
        return self.right / self.count if self.count else None

    @property
    def percent(self) -> str:
        return f"{self.right / self.count:.1%}" if self.count else "–"

    @property
    def wrong(self) -> int:
        return self.count - self.right


def labelled_drawings() -> DrawingsWithEffective:
    """Predicted, not excluded, with a label used (annotated `effective`): the rows of drawing_scored."""
    return drawings_with_effective_label().filter(SCORED)


def reviewed_drawings(*, model: str = "") -> DrawingsWithEffective:
    """The labelled drawings a reviewer has looked at (the rows of drawing_scored_reviewed), of one model if named."""
    reviewed = labelled_drawings().filter(reviewed_at__isnull=False)
    return reviewed.filter(model_name=model) if model else reviewed


def _scores(qs: DrawingsWithEffective, *keys: Any) -> list[dict[str, Any]]:
    # COUNT(predicted_digit) (never null here), not COUNT(id): the id is not in the indexes these read
    return list(
        qs.order_by()
        .values(*keys)
        .annotate(n=Count("predicted_digit"), right=Count("predicted_digit", filter=Q(predicted_digit=F("effective"))))
    )


def score_total(qs: DrawingsWithEffective) -> Score:
    row = qs.order_by().aggregate(
        n=Count("predicted_digit"), right=Count("predicted_digit", filter=Q(predicted_digit=F("effective")))
    )
    return Score(row["n"], row["right"])


def score_sum(scores: Iterable[Score]) -> Score:
    """The total of several scores (the per-model ones: no query of its own)."""
    scores = list(scores)
    return Score(sum(s.count for s in scores), sum(s.right for s in scores))


def score_per_model(qs: DrawingsWithEffective) -> dict[str, Score]:
    """Model name -> its score on `qs` (drawings predicted by that model)."""
    return {r["model_name"]: Score(r["n"], r["right"]) for r in _scores(qs, "model_name")}


def score_per_week(qs: DrawingsWithEffective) -> dict[date, dict[str, Score]]:
    """Monday of the week the drawing was made -> model name -> score, newest week first."""
    weeks: dict[date, dict[str, Score]] = defaultdict(dict)
    for r in _scores(qs.annotate(week=TruncWeek("created_at")), "week", "model_name"):
        weeks[r["week"].date()][r["model_name"]] = Score(r["n"], r["right"])
    return dict(sorted(weeks.items(), reverse=True))


def confusion(qs: DrawingsWithEffective) -> list[list[int]]:
    """10x10 counts: rows = the label used, columns = the prediction."""
    cm = [[0] * 10 for _ in DIGITS]
    for r in qs.order_by().values("effective", "predicted_digit").annotate(n=Count("predicted_digit")):
        cm[r["effective"]][r["predicted_digit"]] = r["n"]
    return cm


# ---------------------------------------------------------------- the served model and the models list


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


def model_versions(*, directory: Path | None = None) -> list[ModelVersion]:
    """Every model card in the directory (current.json is the pointer, not a card), newest first;
    an unreadable card is listed with its problem rather than hidden."""
    out = []
    for path in sorted((directory or models_dir()).glob("*.json")):
        if path.name == "current.json":
            continue
        try:
            out.append(model_version(path))
        except (OSError, ValueError, AttributeError) as exc:
            out.append(unreadable_version(path, exc))
    return sorted(out, key=lambda v: (v.created.timestamp() if v.created else 0.0, v.name), reverse=True)


@dataclass(frozen=True)
class ModelsOverview:
    """What the models page shows: the served model, the choices made, every card with its score on
    reviewed drawings, and the models drawings name that have no card any more."""

    current: str  # "" when it cannot be told
    choice: ServingModel | None
    previous: str | None
    history: list[ServingModel]
    rows: list[tuple[ModelVersion, Score]]
    unlisted: list[tuple[str, Score]]


def models_overview(*, history: int = 10) -> ModelsOverview:
    try:
        current = serving_model_name()
    except (OSError, ValueError, KeyError):
        current = ""
    scores = score_per_model(reviewed_drawings())
    versions = model_versions()
    return ModelsOverview(
        current=current,
        choice=serving_choice(),
        previous=serving_previous_name(),
        history=list(ServingModel.objects.select_related("chosen_by")[:history]),
        rows=[(v, scores.get(v.name, Score(0, 0))) for v in versions],
        unlisted=[(m, scores[m]) for m in sorted(set(scores) - {v.name for v in versions})],
    )


# ---------------------------------------------------------------- what an export and an import read


def drawings_for_export(*, since: datetime | None = None) -> QuerySet[Drawing]:
    """The drawings an export looks at (excluded, unlabelled and unreviewed ones are dropped by the
    writer, review.export, which counts them); made on or after `since` when given."""
    qs = Drawing.objects.all()
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    return qs


def uji_load(path: Path) -> list[uji.PenDigit]:
    """The UJI dev digits from a directory holding uji-digits-dev.json, or from the file itself."""
    from digits.data import uji  # the ML side's data loader, only when an import asks for it

    path = Path(path)
    if path.is_file() and path.name != uji.DEV_FILE:
        raise ValueError(f"{path}: expected a directory or {uji.DEV_FILE}")
    return uji.load_dev(path.parent if path.is_file() else path)
