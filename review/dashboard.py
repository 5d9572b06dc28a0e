"""How the model is doing on the drawings people made: a staff page linked from the admin index, for
staff who may view drawings (review.permissions).

GET /review/dashboard/                    accuracy per model and per week, agreement, confusion matrix
GET /review/dashboard/confusion.png       the confusion matrix of reviewed drawings (?model= one model)

Two measures, from two sets of drawings (excluded ones and those still waiting are in neither):
- *accuracy on reviewed drawings*: drawings a reviewer has looked at, with a label (the reviewer's,
  or the person's when the reviewer let it stand), prediction == that label;
- *agreement*: every drawing with a label, reviewed or not, prediction == the label used. Most
  labels come from the page's "Right? ✓ / ✗", so this is the larger, noisier set.
The confusion matrix is of the reviewed set. Everything is counted in the database (GROUP BY), so
the page costs a few queries whatever the number of drawings, and each reads a partial index that
holds the scored drawings' columns (drawing_scored, drawing_scored_reviewed: index-only scans of the
labelled drawings, never the table with its strokes and images; docs/scale.md). The page runs three
(per model, reviewed and labelled; per week), the plot one; totals are summed from them.
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.contrib import admin
from django.db.models import Count, F, Q, QuerySet
from django.db.models.functions import TruncWeek
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET
from PIL import Image, ImageDraw, ImageFont

from recognizer.models import SCORED, Drawing
from review.permissions import VIEW_DRAWINGS, staff_page

DIGITS = range(10)


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


# ---------------------------------------------------------------- read path


def labelled_drawings() -> QuerySet[Drawing]:
    """Predicted, not excluded, with a label used (annotated `effective`): the rows of drawing_scored."""
    return Drawing.objects.with_effective_label().filter(SCORED)


def reviewed_drawings() -> QuerySet[Drawing]:
    return labelled_drawings().filter(reviewed_at__isnull=False)


def _scores(qs: QuerySet[Drawing], *keys: Any) -> list[dict[str, Any]]:
    # COUNT(predicted_digit) (never null here), not COUNT(id): the id is not in the indexes these read
    return list(
        qs.order_by()
        .values(*keys)
        .annotate(n=Count("predicted_digit"), right=Count("predicted_digit", filter=Q(predicted_digit=F("effective"))))
    )


def score_total(qs: QuerySet[Drawing]) -> Score:
    row = qs.order_by().aggregate(
        n=Count("predicted_digit"), right=Count("predicted_digit", filter=Q(predicted_digit=F("effective")))
    )
    return Score(row["n"], row["right"])


def score_sum(scores: Any) -> Score:
    """The total of several scores (the per-model ones: no query of its own)."""
    scores = list(scores)
    return Score(sum(s.count for s in scores), sum(s.right for s in scores))


def score_per_model(qs: QuerySet[Drawing]) -> dict[str, Score]:
    """Model name -> its score on `qs` (drawings predicted by that model)."""
    return {r["model_name"]: Score(r["n"], r["right"]) for r in _scores(qs, "model_name")}


def score_per_week(qs: QuerySet[Drawing]) -> dict[date, dict[str, Score]]:
    """Monday of the week the drawing was made -> model name -> score, newest week first."""
    weeks: dict[date, dict[str, Score]] = defaultdict(dict)
    for r in _scores(qs.annotate(week=TruncWeek("created_at")), "week", "model_name"):
        weeks[r["week"].date()][r["model_name"]] = Score(r["n"], r["right"])
    return dict(sorted(weeks.items(), reverse=True))


def confusion(qs: QuerySet[Drawing]) -> list[list[int]]:
    """10x10 counts: rows = the label used, columns = the prediction."""
    cm = [[0] * 10 for _ in DIGITS]
    for r in qs.order_by().values("effective", "predicted_digit").annotate(n=Count("predicted_digit")):
        cm[r["effective"]][r["predicted_digit"]] = r["n"]
    return cm


# ---------------------------------------------------------------- the plot


def confusion_png(cm: list[list[int]], title: str, cell: int = 44) -> bytes:
    """The matrix drawn with PIL as digits.evaluation.evaluate draws its PNGs (that module imports torch, which
    the web side never does): counts in cells, shade ~ the row's share, errors in red."""
    font = ImageFont.load_default()
    margin, top = 40, 60
    img = Image.new("RGB", (margin + 10 * cell + 12, top + 10 * cell + 28), "white")
    draw = ImageDraw.Draw(img)
    draw.text((8, 6), title, fill="black", font=font)
    draw.text((margin + 4 * cell, top - 36), "predicted", fill="black", font=font)
    draw.text((4, top + 10 * cell + 8), "rows: label used", fill="black", font=font)
    for i in DIGITS:
        total = max(sum(cm[i]), 1)
        draw.text((margin - 14, top + i * cell + cell // 2 - 5), str(i), fill="black", font=font)
        draw.text((margin + i * cell + cell // 2 - 3, top - 16), str(i), fill="black", font=font)
        for j in DIGITS:
            x0, y0 = margin + j * cell, top + i * cell
            s = cm[i][j] / total
            if i == j:
                shade = (int(255 - 175 * s), int(255 - 75 * s), int(255 - 175 * s))  # green
            else:
                s = min(1.0, s * 5)  # errors are few: amplified to be seen
                shade = (255, int(255 - 200 * s), int(255 - 200 * s))
            draw.rectangle((x0, y0, x0 + cell - 1, y0 + cell - 1), fill=shade, outline=(200, 200, 200))
            if cm[i][j]:
                text = str(cm[i][j])
                draw.text((x0 + cell // 2 - 3 * len(text), y0 + cell // 2 - 5), text, fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- views


@staff_page(*VIEW_DRAWINGS)
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    reviewed, labelled = reviewed_drawings(), labelled_drawings()
    per_model = score_per_model(reviewed)
    agreement_per_model = score_per_model(labelled)
    weeks = score_per_week(reviewed)
    models = sorted(set(per_model) | set(agreement_per_model))
    chosen = request.GET.get("model") or ""
    return render(
        request,
        "models/dashboard.html",
        {
            **admin.site.each_context(request),
            "title": "How the model is doing",
            "reviewed": score_sum(per_model.values()),
            "agreement": score_sum(agreement_per_model.values()),
            "model_rows": [(m, per_model.get(m, Score(0, 0)), agreement_per_model.get(m, Score(0, 0))) for m in models],
            "models": models,
            "weeks": [(week, [scores.get(m) for m in models]) for week, scores in weeks.items()],
            "chosen": chosen if chosen in models else "",
            "confusion_url": reverse("review:confusion-png"),
            "models_url": reverse("review:models"),
        },
    )


@staff_page(*VIEW_DRAWINGS)
@require_GET
def dashboard_confusion_png(request: HttpRequest) -> HttpResponse:
    qs = reviewed_drawings()
    model = request.GET.get("model") or ""
    if model:
        qs = qs.filter(model_name=model)
    cm = confusion(qs)
    total = Score(sum(map(sum, cm)), sum(cm[d][d] for d in DIGITS))
    accuracy = f"accuracy {total.accuracy:.2%}" if total.accuracy is not None else "none yet"
    title = f"{model or 'all models'}: {total.count} reviewed drawings, {accuracy}"
    response = HttpResponse(confusion_png(cm, title), content_type="image/png")
    response["Cache-Control"] = "private, no-store"  # the counts change with every review
    return response
