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
may view drawings, view serving models or switch them (review.permissions). The page's figures are
review.selectors' reads (the cards: review.model_cards), the switch and the roll back review.services'
writes; this module holds the views.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from review.model_cards import COLUMNS, UnservableModel
from review.permissions import SWITCH_MODELS, VIEW_MODELS, has_any, staff_page
from review.selectors import models_overview
from review.services import serving_model_roll_back, serving_model_set


@staff_page(*VIEW_MODELS)
@require_GET
def models_page(request: HttpRequest) -> HttpResponse:
    overview = models_overview()
    return render(
        request,
        "models/models.html",
        {
            **admin.site.each_context(request),
            "title": "Models",
            "rows": overview.rows,
            "columns": [(key, header) for key, header, _ in COLUMNS],
            "current": overview.current,
            "choice": overview.choice,
            "history": overview.history,
            "previous": overview.previous,
            "may_switch": has_any(request, SWITCH_MODELS),
            "unlisted": overview.unlisted,
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
