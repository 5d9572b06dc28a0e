"""The operations page in a real browser: a superuser logs in through the admin's form and, while
clients draw over WebSockets on the real stack, sees the page fill in from figures.json (rates, a
latency percentile, the queues, the workers with the model they serve), with no CSP violation. Then,
with figures.json answered by fixed readings, the page's arithmetic: rates, percentiles from the
buckets, utilisation, the errors of the last minute, Redis down and a 403 shown as such."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import requests
from playwright.sync_api import ConsoleMessage, Page, Route, expect

from scripts.screenshot_operations import DURATION, NONZERO, DrawingLoad, log_in, wait_until_filled
from scripts.stack import Stack
from tests.browser.conftest import orm, wait_until
from tests.browser.pad import digit_png

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-test-password"
USER = "operator"


def make_superuser() -> None:
    from django.contrib.auth.models import User

    User.objects.create_superuser(USER, "operator@example.org", PASSWORD)


def problems_of(page: Page) -> list[str]:
    """From now on: CSP violations (Chromium logs each to the console), script errors, and the page's
    requests answered 4xx/5xx (its stylesheet, its script, figures.json)."""
    seen: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            seen.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: seen.append(f"page error: {error}"))
    page.on("response", lambda r: seen.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    return seen


def served_models(stack: Stack) -> dict[str, int]:
    return requests.get(f"{stack.url}/healthz", timeout=10).json().get("workers_per_model") or {}


def test_the_page_fills_in_from_the_live_stack_under_load(page: Page, stack: Stack) -> None:
    problems = problems_of(page)
    orm(make_superuser)
    model = next(iter(wait_until(page, lambda: served_models(stack), what="a worker serving a model")))
    log_in(page, USER, PASSWORD)
    expect(page.locator("#content-main")).to_have_attribute("data-state", "live")

    with DrawingLoad(stack.url, clients=2, uploads_from=digit_png(7), upload_every=3) as load:
        wait_until_filled(page, model)
        # the uploads' predictions (a live drawing's are counted by the consumer) and their batches
        upload = page.locator("#rates tbody tr", has_text="predictions delivered").filter(has_text="upload")
        expect(upload.locator("td").nth(3)).to_have_text(re.compile(r"^[1-9]"))
        expect(page.locator('#batches tr[data-key*="predict"] td').nth(1)).to_have_text(NONZERO)
        for q in ("p50", "p95", "p99"):
            for phase in ("queue", "inference"):
                expect(page.locator(f'#latency tr[data-key="{phase}"] td.{q}')).to_have_text(DURATION)
        expect(page.locator('#queues tr[data-key="inference"] td.workers')).to_have_text(re.compile(r"^[1-9]"))
        expect(page.locator('#queues tr[data-key="preprocess"] td.workers')).to_have_text(re.compile(r"^[1-9]"))
        expect(page.locator('#queues tr[data-key="inference"] td.depth')).to_have_text(re.compile(r"^\d+$"))
        inference = page.locator("#workers tbody tr", has_text="inference").first
        expect(inference.locator("td.model")).to_have_text(model)
        expect(inference.locator("td").nth(3)).to_have_text(re.compile(r"^\d+ MiB$"))
        expect(inference.locator("td.ops-busy .ops-pct")).to_have_text(re.compile(r"^\d+ %$"))
    assert load.errors == [] and load.predictions > 0
    assert problems == []


# ---------------------------------------------------------------- the page's arithmetic

# Per 2 s between readings: 10 predictions, 12 jobs in 4 batches, 100 end-to-end observations (50 up to
# 5 ms, 45 more up to 10 ms, 5 more up to 20 ms), a worker busy 0.5 s; 3 errors, all between the first
# and second readings.
BOUNDS = ["0.001", "0.0025", "0.005", "0.01", "0.02", "0.035", "+Inf"]
PER_READING = [0, 0, 50, 95, 100, 100, 100]


def reading(n: int) -> dict[str, Any]:
    def one(value: float, **labels: str) -> list[dict[str, Any]]:
        return [{"labels": labels, "value": value}]

    return {
        "at": 1_765_000_000.0 + 2 * n,
        "counters": {
            "digits_predictions_total": one(10.0 * n, source="drawing"),
            "digits_answers_total": one(10.0 * n, kind="prediction", outcome="ok"),
            "digits_jobs_published_total": one(12.0 * n, task="predict"),
            "digits_batches_published_total": one(4.0 * n, task="predict"),
            "digits_errors_total": one(3.0 if n else 0.0, code="bad_stroke"),
            "digits_worker_busy_seconds_total": one(100 + 0.5 * n, worker="inference0@h", queue="inference"),
        },
        "gauges": {
            "digits_queue_depth": one(7.0, queue="inference") + one(0.0, queue="preprocess"),
            "digits_workers": one(1.0, queue="inference") + one(0.0, queue="preprocess"),
            "digits_worker_model": one(1.0, worker="inference0@h", model="cnn-test"),
            "digits_worker_rss_bytes": one(150 * 2.0**20, worker="inference0@h", queue="inference"),
            "digits_open_sockets": one(4.0),
            "digits_redis_up": one(1.0),
        },
        "histograms": {
            "digits_phase_seconds": [
                {
                    "labels": {"phase": "end_to_end"},
                    "count": 100.0 * n,
                    "sum": 0.6 * n,
                    "buckets": [[le, float(c * n)] for le, c in zip(BOUNDS, PER_READING)],
                }
            ],
            "digits_batch_size": [
                {
                    "labels": {"task": "predict"},
                    "count": 4.0 * n,
                    "sum": 12.0 * n,
                    "buckets": [["4.0", 4.0 * n], ["+Inf", 4.0 * n]],
                }
            ],
        },
    }


def test_rates_percentiles_utilisation_and_errors_are_computed_from_two_readings(page: Page) -> None:
    problems = problems_of(page)
    orm(make_superuser)
    served: dict[str, Any] = {"n": 0, "mode": "ok"}

    def figures(route: Route) -> None:
        if served["mode"] == "refuse":
            route.fulfill(status=403, content_type="text/plain", body="no")
            return
        figures = reading(served["n"])
        if served["mode"] == "redis down":  # as the server says it: Redis's gauges are not there
            figures["gauges"] = {
                "digits_open_sockets": figures["gauges"]["digits_open_sockets"],
                "digits_redis_up": [{"labels": {}, "value": 0.0}],
            }
            del figures["counters"]["digits_worker_busy_seconds_total"]
        route.fulfill(status=200, content_type="application/json", body=json.dumps(figures))
        served["n"] += 1

    page.route("**/review/operations/figures.json", figures)
    log_in(page, USER, PASSWORD)
    expect(page.locator("#content-main")).to_have_attribute("data-state", "live")
    expect(page.locator("#tile-predictions")).to_have_text("5.00")  # 10 in 2 s
    drawing = page.locator("#rates tbody tr", has_text="predictions delivered")
    expect(drawing.locator("td.rate")).to_have_text("5.00")
    expect(page.locator("#batches tbody tr td")).to_have_text(["predict", "6.00", "2.00", "3.0"])
    end_to_end = page.locator('#latency tr[data-key="end_to_end"] td')
    expect(end_to_end).to_have_text(["end to end", "5.0 ms", "10 ms", "18 ms", "100"])
    expect(page.locator("#tile-p95")).to_have_text("10 ms")
    expect(page.locator('#latency tr[data-key="queue"] td.p50')).to_have_text("–")  # nothing in that phase
    expect(page.locator("#workers tbody tr td")).to_have_text(["inference0@h", "inference", "cnn-test", "150 MiB", "25 %"])
    expect(page.locator("#workers meter")).to_have_attribute("value", "0.25")
    expect(page.locator('#queues tr[data-key="inference"] td')).to_have_text(["inference", "7", "1"])
    expect(page.locator('#queues tr[data-key="preprocess"] td.workers')).to_have_class(re.compile(r"\bops-bad\b"))
    expect(page.locator("#tile-depth")).to_have_text("7")
    expect(page.locator("#tile-sockets")).to_have_text("4")
    expect(page.locator('#errors tr[data-key="bad_stroke"] td')).to_have_text(["bad_stroke", "3", "3"])
    expect(page.locator("#tile-errors")).to_have_text("3")

    served["mode"] = "redis down"
    expect(page.locator("#ops-status")).to_contain_text("Redis did not answer")
    expect(page.locator("#tile-depth")).to_have_text("?")
    expect(page.locator("#workers tbody tr")).to_have_text("no worker alive")
    expect(page.locator("#tile-predictions")).to_have_text("5.00")  # the web's own figures go on

    served["mode"] = "refuse"
    expect(page.locator("#content-main")).to_have_attribute("data-state", "error", timeout=10000)
    expect(page.locator("#ops-status")).to_contain_text("403")
    expect(page.locator("#tile-predictions")).to_have_text("5.00")  # the last good reading stays
    assert [p for p in problems if not p.startswith("403 ")] == []  # the refused fetch; nothing else
