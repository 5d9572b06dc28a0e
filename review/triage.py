"""The triage page: staff label stored drawings one at a time by keyboard, and its small JSON API.

GET  /review/                          the page (staff who may view drawings; others not staff go to the admin's login)
GET  /review/api/queue?order=&after=   the next unreviewed drawings, a page at a time (keyset cursor): view_drawing
POST /review/api/drawings/<id>         {"action": "label", "digit": 0-9} | {"action": "confirm"} | {"action": "exclude"}:
                                       change_drawing

The API answers 403 to anyone but active staff holding the permission (review.permissions) and
checks CSRF (the page sends the token as X-CSRFToken). The queue is review.selectors', the answers
review.services' (the writes of the admin's actions); this module holds the views, what they send of
a drawing and the check of what the page sends.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Literal

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from contract.errors import error_message
from recognizer.models import Drawing
from review.permissions import CHANGE_DRAWINGS, VIEW_DRAWINGS, has_any, staff_page
from review.selectors import remaining_to_review, review_queue
from review.services import NoPrediction, drawing_review_answer
from review.thumbnails import image28_png

ORDERS: dict[str, str] = {"confidence": "least sure first", "oldest": "oldest first"}
PAGE_MAX = 200


# ---------------------------------------------------------------- what the page is sent


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
        if type(digit) is not int or not 0 <= digit <= 9:  # not isinstance: bool is an int, and not a digit
            raise ValueError("'digit' must be an integer 0-9")
        return ReviewAction("label", digit)
    if kind in ("confirm", "exclude"):
        return ReviewAction(kind)
    raise ValueError("'action' must be 'label', 'confirm' or 'exclude'")


# ---------------------------------------------------------------- views


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_message(code, message), status=status)


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
        rows, next_after = review_queue(
            order="oldest" if order == "oldest" else "confidence", after=request.GET.get("after") or None, limit=limit
        )
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
    try:
        row = drawing_review_answer(pk=pk, kind=action.kind, digit=action.digit, by=request.user)
    except NoPrediction:
        return _error(409, "no_prediction", "this drawing has no prediction yet to confirm")
    except Drawing.DoesNotExist:
        return _error(404, "not_found", f"no drawing {pk}")
    remaining, estimated = remaining_to_review()
    return JsonResponse({"drawing": drawing_item(row), "remaining": remaining, "remaining_estimated": estimated})
