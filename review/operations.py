"""The operations page: the service at a glance for staff without Prometheus, linked from the admin
index, for staff holding `recognizer.view_operations` (models.ServingModel.Meta.permissions;
superusers hold it; staff without it get 403, as in review.permissions).

GET /review/operations/               the page (templates/ops/operations.html)
GET /review/operations/figures.json   the figures /metrics shows, as values

The figures are those of a scrape (recognizer.metrics.registry(): every web process on this machine,
and what Redis knows), read in the web process itself: the page does not go through /metrics, whose
token and networks are the scraper's. The JSON gives the values as they stand (counters, histogram
buckets, gauges, with the server's clock); the page's script (review/static/review/operations.js)
polls it every 2 s and turns two readings into rates, latency percentiles over the interval, worker
utilisation and the errors of the last minute, as Prometheus would with rate() and histogram_quantile().

    {"at": 1765150000.25,                       # time.time() when read
     "counters": {"digits_predictions_total": [{"labels": {"source": "drawing"}, "value": 12.0}], ...},
     "gauges": {"digits_queue_depth": [{"labels": {"queue": "inference"}, "value": 0.0}], ...},
     "histograms": {"digits_phase_seconds": [{"labels": {"phase": "queue"}, "count": 3.0, "sum": 0.01,
                                              "buckets": [["0.001", 0.0], ..., ["+Inf", 3.0]]}], ...}}

Only the service's own families (digits_*) are given; a family with no sample yet is there, empty.
"""

from __future__ import annotations

import time
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from recognizer import metrics
from review.permissions import staff_page

VIEW_OPERATIONS = ("recognizer.view_operations",)
PREFIX = "digits_"
POLL_MS = 2000


def figures(registry: Any | None = None) -> dict[str, Any]:
    """The digits_* families of a scrape as plain values (see the module's docstring)."""
    counters: dict[str, list[dict[str, Any]]] = {}
    gauges: dict[str, list[dict[str, Any]]] = {}
    histograms: dict[str, list[dict[str, Any]]] = {}
    at = time.time()
    for family in (registry or metrics.registry()).collect():
        if not family.name.startswith(PREFIX):
            continue
        if family.type == "counter":
            counters[f"{family.name}_total"] = [
                {"labels": dict(s.labels), "value": float(s.value)} for s in family.samples if s.name.endswith("_total")
            ]
        elif family.type == "gauge":
            gauges[family.name] = [{"labels": dict(s.labels), "value": float(s.value)} for s in family.samples]
        elif family.type == "histogram":
            histograms[family.name] = _histogram(family.name, family.samples)
    return {"at": at, "counters": counters, "gauges": gauges, "histograms": histograms}


def _histogram(name: str, samples: list[Any]) -> list[dict[str, Any]]:
    """One entry per label set (without `le`): its cumulative buckets in order, count and sum."""
    series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for s in samples:
        labels = {k: v for k, v in s.labels.items() if k != "le"}
        entry = series.setdefault(tuple(sorted(labels.items())), {"labels": labels, "count": 0.0, "sum": 0.0, "buckets": []})
        if s.name == f"{name}_bucket":
            entry["buckets"].append([s.labels["le"], float(s.value)])
        elif s.name == f"{name}_count":
            entry["count"] = float(s.value)
        elif s.name == f"{name}_sum":
            entry["sum"] = float(s.value)
    for entry in series.values():
        entry["buckets"].sort(key=lambda b: float(b[0]))  # "+Inf" last
    return list(series.values())


@staff_page(*VIEW_OPERATIONS)
@require_GET
@never_cache
def operations_page(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "ops/operations.html",
        {
            **admin.site.each_context(request),
            "title": "Operations",
            "figures_url": reverse("review:operations-figures"),
            "poll_ms": POLL_MS,
            "poll_s": f"{POLL_MS / 1000:g}",
        },
    )


@staff_page(*VIEW_OPERATIONS)
@require_GET
@never_cache
def operations_figures(request: HttpRequest) -> JsonResponse:
    return JsonResponse(figures())
