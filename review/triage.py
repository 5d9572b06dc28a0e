"""The triage page: staff label stored drawings one at a time by keyboard, and its small JSON API.

GET  /review/                          the page (staff who may view drawings; others not staff go to the admin's login)
GET  /review/api/queue?order=&after=   the next unreviewed drawings, a page at a time (keyset cursor): view_drawing
POST /review/api/drawings/<id>         {"action": "label", "digit": 0-9} | {"action": "confirm"} | {"action": "exclude"}:
                                       change_drawing

The API answers 403 to anyone but active staff holding the permission (review.permissions) and
checks CSRF (the page sends the token as X-CSRFToken). Writes go through DrawingQuerySet, as the
admin's actions do.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Literal

from django.db import connection
from django.db.models import F, Q, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from recognizer.models import TRIAGE_ORDER, TRIAGE_ROWS, Drawing
from review.images import image28_png
from review.permissions import CHANGE_DRAWINGS, VIEW_DRAWINGS, has_any, staff_page

Order = Literal["confidence", "oldest"]
ORDERS: dict[str, str] = {"confidence": "least sure first", "oldest": "oldest first"}
PAGE_MAX = 200
# The queue's "remaining" is counted exactly up to this many rows (an index-only scan of the partial
# index drawing_triage that stops there: a few ms), and is PostgreSQL's estimate above it.
COUNT_UP_TO = 10_000


# ---------------------------------------------------------------- read path


def drawings_to_review() -> QuerySet[Drawing]:
    """The rows of the partial index drawing_triage (models.TRIAGE_ROWS)."""
    return Drawing.objects.filter(TRIAGE_ROWS)


def remaining_to_review() -> tuple[int, bool]:
    """(how many drawings wait for review, whether that is an estimate): counted exactly up to
    COUNT_UP_TO (a count that stops there), else PostgreSQL's statistics for the table times the share
    the planner expects (EXPLAIN, no row read). On another database, counted exactly."""
    exact = drawings_to_review().order_by()[: COUNT_UP_TO + 1].count()
    if exact <= COUNT_UP_TO or connection.vendor != "postgresql":
        return (exact if exact <= COUNT_UP_TO else drawings_to_review().count()), False
    plan = json.loads(drawings_to_review().order_by().explain(format="json"))
    return max(int(plan[0]["Plan"]["Plan Rows"]), exact), True


def review_queue(*, order: Order, after: str | None, limit: int) -> tuple[list[Drawing], str | None]:
    """One page of unreviewed drawings in `order`, after the cursor a previous page returned.

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
        rows = list(qs.annotate(sure_value=F("sure")).order_by("sure", "pk")[:limit])
        next_after = f"{rows[-1].sure_value!r}:{rows[-1].pk}" if len(rows) == limit else None
    else:
        if after:
            qs = qs.filter(pk__gt=_cursor(after, int)[1])
        rows = list(qs.order_by("pk")[:limit])
        next_after = f"0:{rows[-1].pk}" if len(rows) == limit else None
    return rows, next_after


def _cursor(after: str, kind: type) -> tuple[Any, int]:
    value, _, pk = after.rpartition(":")
    return kind(value), int(pk)


def drawing_item(row: Drawing) -> dict[str, Any]:
    """What the page shows of one drawing: the strokes (drawn on a canvas, also while the prediction
    is pending), the 28x28 image the model saw, its guess and both labels."""
    return {
        "id": row.pk,
        "strokes": row.strokes,
        "canvas": [row.canvas_width, row.canvas_height],
        "brush": row.brush,
        "image28": (
            f"data:image/png;base64,{base64.b64encode(image28_png(bytes(row.image28))).decode()}" if row.image28 else None
        ),
        "predicted_digit": row.predicted_digit,
        "confidence": row.confidence,
        "uncertain": row.uncertain,
        "reason": row.reason,
        "model": row.model_name,
        "label": row.label,
        "review_label": row.review_label,
        "effective_label": row.effective_label,
        "excluded": row.excluded,
        "reviewed": row.reviewed_at is not None,
        "admin_url": reverse("admin:recognizer_drawing_change", args=[row.pk]),
    }


# ---------------------------------------------------------------- checking what the page sends


@dataclass(frozen=True)
class ReviewAction:
    kind: Literal["label", "confirm", "exclude"]
    digit: int | None = None


def check_review_action(body: bytes) -> ReviewAction:
    """The request body as a ReviewAction, or ValueError saying what is wrong with it."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("the body must be JSON") from exc
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    kind = data.get("action")
    if kind == "label":
        digit = data.get("digit")
        if type(digit) is not int or not 0 <= digit <= 9:  # noqa: E721 (bool is an int, and not a digit)
            raise ValueError("'digit' must be an integer 0-9")
        return ReviewAction("label", digit)
    if kind in ("confirm", "exclude"):
        return ReviewAction(kind)
    raise ValueError("'action' must be 'label', 'confirm' or 'exclude'")


# ---------------------------------------------------------------- views


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"type": "error", "code": code, "message": message}, status=status)


@staff_page(*VIEW_DRAWINGS)
@require_GET
def triage(request: HttpRequest) -> HttpResponse:
    order = request.GET.get("order", "confidence")
    return render(
        request,
        "review/triage.html",
        {
            "order": order if order in ORDERS else "confidence",
            "orders": ORDERS,
            "changelist_url": reverse("admin:recognizer_drawing_changelist"),
            "may_change": has_any(request, CHANGE_DRAWINGS),
        },
    )


@require_GET
def api_queue(request: HttpRequest) -> JsonResponse:
    if not has_any(request, VIEW_DRAWINGS):
        return _error(403, "forbidden", "staff with the 'view drawing' permission only")
    order = request.GET.get("order", "confidence")
    if order not in ORDERS:
        return _error(400, "bad_order", f"order is one of {', '.join(ORDERS)}")
    try:
        limit = min(max(int(request.GET.get("limit", 50)), 1), PAGE_MAX)
        rows, next_after = review_queue(order=order, after=request.GET.get("after") or None, limit=limit)
    except ValueError:
        return _error(400, "bad_cursor", "'after' must be a cursor from a previous answer, 'limit' a number")
    remaining, estimated = remaining_to_review()
    return JsonResponse(
        {"items": [drawing_item(r) for r in rows], "next": next_after, "remaining": remaining, "remaining_estimated": estimated}
    )


@require_POST
def api_review(request: HttpRequest, pk: int) -> JsonResponse:
    if not has_any(request, CHANGE_DRAWINGS):
        return _error(403, "forbidden", "staff with the 'change drawing' permission only")
    try:
        action = check_review_action(request.body)
    except ValueError as exc:
        return _error(400, "bad_request", str(exc))
    one = Drawing.objects.filter(pk=pk)
    if action.kind == "label":
        changed = one.relabel(action.digit, by=request.user)
    elif action.kind == "confirm":
        changed = one.confirm_prediction(by=request.user)
        if not changed and one.exists():
            return _error(409, "no_prediction", "this drawing has no prediction yet to confirm")
    else:
        changed = one.exclude_from_training(by=request.user)
    if not changed:
        return _error(404, "not_found", f"no drawing {pk}")
    remaining, estimated = remaining_to_review()
    return JsonResponse({"drawing": drawing_item(one.get()), "remaining": remaining, "remaining_estimated": estimated})
