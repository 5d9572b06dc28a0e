"""The operations page and its figures.json: only for staff holding recognizer.view_operations
(superusers hold it), and the JSON gives the figures a scrape shows, as values: counters, histogram
buckets and gauges, Redis's included."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from contract.heartbeats import heartbeat_key
from recognizer import metrics
from tests.conftest import TEST_REDIS_URL
from worker.heartbeat import beat

pytestmark = pytest.mark.django_db

_ids = itertools.count()
PAGE = "/review/operations/"
FIGURES = "/review/operations/figures.json"


def client_for(*, superuser: bool = False, staff: bool = True, permissions: tuple[str, ...] = ()) -> Client:
    n = next(_ids)
    if superuser:
        user = User.objects.create_superuser(f"root{n}", f"root{n}@example.org", "pw")
    else:
        user = User.objects.create_user(f"user{n}", is_staff=staff)
        user.user_permissions.add(*Permission.objects.filter(content_type__app_label="recognizer", codename__in=permissions))
    c = Client()
    c.force_login(user)
    return c


@pytest.fixture
def test_redis(settings: Any) -> Iterator[tuple[redis.Redis, str]]:
    """The scrape's Redis reads go to the test Redis under a prefix of their own."""
    prefix = f"test-ops-{uuid.uuid4().hex[:8]}:"
    settings.REDIS_URL, settings.REDIS_PREFIX = TEST_REDIS_URL, prefix
    metrics._client = None
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        yield client, prefix
    finally:
        for k in client.scan_iter(match=f"{prefix}*"):
            client.delete(k)
        metrics._client = None


def test_the_urls_are_the_ones_the_page_and_its_script_use() -> None:
    assert reverse("review:operations") == PAGE
    assert reverse("review:operations-figures") == FIGURES


def test_the_permission_exists_on_the_serving_model() -> None:
    perm = Permission.objects.get(content_type__app_label="recognizer", codename="view_operations")
    assert perm.content_type.model == "servingmodel"
    assert perm.name == "Can view the operations page"


def test_a_superuser_gets_the_page_and_the_figures(test_redis: tuple[redis.Redis, str]) -> None:
    c = client_for(superuser=True)
    page = c.get(PAGE)
    assert page.status_code == 200
    html = page.content.decode()
    assert f'data-figures-url="{FIGURES}"' in html
    assert "review/operations.js" in html and "review/operations.css" in html
    for table in ("rates", "batches", "latency", "queues", "workers", "errors"):
        assert f'id="{table}"' in html
    assert "<script>" not in html  # the policy runs no inline script: all of it is in the static file
    figures = c.get(FIGURES)
    assert figures.status_code == 200 and figures["Content-Type"] == "application/json"
    assert "no-cache" in figures["Cache-Control"] or "max-age=0" in figures["Cache-Control"]


def test_staff_without_the_permission_get_403_for_the_page_and_the_figures() -> None:
    # other recognizer permissions (the dashboard's, the models page's) do not open it
    c = client_for(permissions=("view_drawing", "change_drawing", "view_servingmodel", "add_servingmodel"))
    assert c.get(PAGE).status_code == 403
    assert c.get(FIGURES).status_code == 403


def test_staff_with_view_operations_get_the_page_and_the_figures(test_redis: tuple[redis.Redis, str]) -> None:
    c = client_for(permissions=("view_operations",))
    assert c.get(PAGE).status_code == 200
    assert c.get(FIGURES).status_code == 200


def test_who_is_not_staff_is_sent_to_the_login_even_with_the_permission() -> None:
    for c in (Client(), client_for(staff=False, permissions=("view_operations",))):
        for url in (PAGE, FIGURES):
            response = c.get(url)
            assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), url


def test_the_admin_index_links_the_page_for_those_it_lets_in() -> None:
    assert 'id="operations-link"' in client_for(superuser=True).get("/admin/").content.decode()
    assert 'id="operations-link"' in client_for(permissions=("view_operations",)).get("/admin/").content.decode()
    assert 'id="operations-link"' not in client_for(permissions=("view_drawing",)).get("/admin/").content.decode()


# ---------------------------------------------------------------- what the figures say


def series(figures: dict[str, Any], kind: str, name: str, /, **labels: str) -> list[dict[str, Any]]:
    return [s for s in figures[kind].get(name, []) if all(s["labels"].get(k) == v for k, v in labels.items())]


def counter(figures: dict[str, Any], name: str, /, **labels: str) -> float:
    return sum(s["value"] for s in series(figures, "counters", name, **labels))


def histogram(figures: dict[str, Any], name: str, /, **labels: str) -> dict[str, Any]:
    found = series(figures, "histograms", name, **labels)
    return found[0] if found else {"count": 0.0, "sum": 0.0, "buckets": []}


def bucket_growth(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    was = dict(before["buckets"])
    return {le: n - was.get(le, 0.0) for le, n in after["buckets"]}


def test_the_figures_show_answers_batches_errors_latency_sockets_and_the_workers(test_redis: tuple[redis.Redis, str]) -> None:
    client, prefix = test_redis
    key = heartbeat_key(prefix)
    client.rpush(f"{prefix}inference", *[b"m"] * 5)
    beat(client, key, ["inference0@h@inference"], worker="inference0@h", model="cnn-ops", rss=150_000_000, busy_s=2.5)
    beat(client, key, ["preprocess0@h@preprocess"], worker="preprocess0@h", model="cnn-ops", rss=90_000_000, busy_s=0.25)
    c = client_for(permissions=("view_operations",))
    before = c.get(FIGURES).json()

    metrics.observe_answer("prediction", None, {"queue_inference": 4.0, "preprocess": 0.3, "inference": 2.0, "push": 0.7})
    metrics.observe_answer("prediction", None, {"queue_inference": 30.0, "inference": 2.0})
    metrics.observe_answer("heat", "worker_failed", {})
    metrics.observe_batch("predict", 2)
    metrics.observe_end_to_end("drawing", 0.012)
    metrics.observe_end_to_end("upload", 0.3)
    metrics.observe_error("rate_limited")
    metrics.SOCKETS.inc(3)
    try:
        after = c.get(FIGURES).json()
    finally:
        metrics.SOCKETS.dec(3)

    assert before["at"] <= after["at"] <= time.time()

    def grew(name: str, /, **labels: str) -> float:
        return counter(after, name, **labels) - counter(before, name, **labels)

    # counters: as values (the page takes the differences)
    assert grew("digits_answers_total", kind="prediction", outcome="ok") == 2
    assert grew("digits_answers_total", kind="heat", outcome="worker_failed") == 1
    assert grew("digits_errors_total", code="worker_failed") == 0  # counted where a client is told it
    assert grew("digits_errors_total", code="rate_limited") == 1
    assert grew("digits_predictions_total", source="drawing") == 1
    assert grew("digits_predictions_total", source="upload") == 1
    assert grew("digits_jobs_published_total", task="predict") == 2
    assert grew("digits_batches_published_total", task="predict") == 1

    # histograms: cumulative buckets in order, +Inf last, with count and sum
    queue_after = histogram(after, "digits_phase_seconds", phase="queue")
    assert [le for le, _ in queue_after["buckets"]] == [*(str(b) for b in metrics.BUCKETS), "+Inf"]
    counts = [n for _, n in queue_after["buckets"]]
    assert counts == sorted(counts) and counts[-1] == queue_after["count"]
    queue = bucket_growth(histogram(before, "digits_phase_seconds", phase="queue"), queue_after)
    assert queue["0.0025"] == 0 and queue["0.005"] == 1  # 4 ms
    assert queue["0.02"] == 1 and queue["0.035"] == 2 and queue["+Inf"] == 2  # and 30 ms
    assert queue_after["count"] - histogram(before, "digits_phase_seconds", phase="queue")["count"] == 2
    end_to_end = bucket_growth(
        histogram(before, "digits_phase_seconds", phase="end_to_end"),
        histogram(after, "digits_phase_seconds", phase="end_to_end"),
    )
    assert end_to_end["0.01"] == 0 and end_to_end["0.02"] == 1 and end_to_end["0.25"] == 1 and end_to_end["0.5"] == 2
    answer = (
        histogram(after, "digits_phase_seconds", phase="answer")["sum"]
        - histogram(before, "digits_phase_seconds", phase="answer")["sum"]
    )
    assert answer == pytest.approx(0.0007)
    sizes = bucket_growth(
        histogram(before, "digits_batch_size", task="predict"), histogram(after, "digits_batch_size", task="predict")
    )
    assert sizes["1.0"] == 0 and sizes["2.0"] == 1

    # gauges: sockets, and what Redis knows
    assert (
        sum(s["value"] for s in series(after, "gauges", "digits_open_sockets"))
        - sum(s["value"] for s in series(before, "gauges", "digits_open_sockets"))
        == 3
    )
    assert series(after, "gauges", "digits_queue_depth", queue="inference")[0]["value"] == 5
    assert series(after, "gauges", "digits_queue_depth", queue="preprocess")[0]["value"] == 0
    assert series(after, "gauges", "digits_workers", queue="inference")[0]["value"] == 1
    assert series(after, "gauges", "digits_workers", queue="preprocess")[0]["value"] == 1
    assert {(s["labels"]["worker"], s["labels"]["model"]) for s in series(after, "gauges", "digits_worker_model")} == {
        ("inference0@h", "cnn-ops"),
        ("preprocess0@h", "cnn-ops"),
    }
    assert series(after, "gauges", "digits_worker_rss_bytes", worker="inference0@h")[0] == {
        "labels": {"worker": "inference0@h", "queue": "inference"},
        "value": 150_000_000,
    }
    assert counter(after, "digits_worker_busy_seconds_total", worker="preprocess0@h", queue="preprocess") == 0.25
    assert series(after, "gauges", "digits_redis_up")[0]["value"] == 1

    # only the service's own families, each where it belongs
    names = [*after["counters"], *after["gauges"], *after["histograms"]]
    assert all(name.startswith("digits_") for name in names), names
    assert set(after["histograms"]) == {"digits_phase_seconds", "digits_batch_size"}


def test_with_redis_down_the_figures_say_so_and_still_answer(settings: Any) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    metrics._client = None
    try:
        metrics.observe_end_to_end("drawing", 0.01)
        figures = client_for(superuser=True).get(FIGURES).json()
        assert figures["gauges"]["digits_redis_up"] == [{"labels": {}, "value": 0.0}]
        assert "digits_queue_depth" not in figures["gauges"]
        assert counter(figures, "digits_predictions_total", source="drawing") >= 1
    finally:
        metrics._client = None
