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
(per model, reviewed and labelled; per week), the plot one; totals are summed from them. The counts
are review.selectors' reads; this module holds the views.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from digits.evaluation.metrics import confusion_png  # numpy and PIL only: the web side never imports torch
from review.permissions import VIEW_DRAWINGS, staff_page
from review.selectors import (
    DIGITS,
    Score,
    confusion,
    labelled_drawings,
    reviewed_drawings,
    score_per_model,
    score_per_week,
    score_sum,
)

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
    model = request.GET.get("model") or ""
    cm = confusion(reviewed_drawings(model=model))
    total = Score(sum(map(sum, cm)), sum(cm[d][d] for d in DIGITS))
    accuracy = f"accuracy {total.accuracy:.2%}" if total.accuracy is not None else "none yet"
    title = f"{model or 'all models'}: {total.count} reviewed drawings, {accuracy}"
    # the rows count the label used; errors among reviewed drawings are less rare than on the test sets
    response = HttpResponse(confusion_png(cm, title, rows="label used", error_gain=5), content_type="image/png")
    response["Cache-Control"] = "private, no-store"  # the counts change with every review
    return response
