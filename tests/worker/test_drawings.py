"""Stored drawings get their predictions: in a batch, once, and again by the sweep when lost."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from django.db import connections
from django.utils import timezone

from digits.inference.predictor import load_predictor
from recognizer.models import Drawing
from recognizer.services import drawing_store
from tests.conftest import TEST_REDIS_URL
from tests.support.digit_paths import digit_strokes
from worker.drawings import LOCK_WAIT_S, MAX_ATTEMPTS, Sweeper, drawings_fill, drawings_waiting

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def store(digit: int, name: str, queued: list | None = None) -> Drawing:
    row, created = drawing_store(
        client_id=name,
        strokes=digit_strokes(digit),
        canvas=(280, 280),
        brush=16,
        label=digit,
        enqueue=queued.append if queued is not None else None,
    )
    assert created
    return row


def test_submits_are_idempotent_per_drawing_and_content() -> None:
    a = store(3, "a")
    again, created = drawing_store(client_id="a", strokes=digit_strokes(3), canvas=(280, 280), brush=16, label=5)
    assert not created and again.pk == a.pk and again.label == 5  # the person's latest word
    other, created = drawing_store(client_id="a", strokes=digit_strokes(3), canvas=(280, 280), brush=12, label=3)
    assert created and other.pk != a.pk  # the same id with other strokes is another drawing
    assert Drawing.objects.count() == 2


def test_a_batch_of_stored_drawings_is_filled_in_once() -> None:
    model = load_predictor(ROOT / "models")
    rows = [store(d, f"d{d}") for d in (0, 4, 7)]
    assert all(r.predicted_at is None and r.png is None for r in rows)
    assert drawings_fill(model, [r.pk for r in rows]) == 3
    for row, digit in zip(Drawing.objects.filter(pk__in=[r.pk for r in rows]).order_by("pk"), (0, 4, 7)):
        assert row.predicted_digit == digit and row.model_name == model.name and row.predicted_at is not None
        assert bytes(row.png).startswith(b"\x89PNG") and len(bytes(row.image28)) == 784
        assert len(row.probabilities) == 10 and row.latency_ms >= 0 and row.prediction_attempts == 1
    assert drawings_fill(model, [r.pk for r in rows]) == 0  # already predicted: left alone


def test_the_sweep_queues_rows_left_waiting_and_gives_up_on_poison_rows() -> None:
    old = timezone.now() - timedelta(minutes=5)
    waiting = store(1, "lost")
    fresh = store(2, "fresh")
    poison = store(3, "poison")
    Drawing.objects.filter(pk__in=[waiting.pk, poison.pk]).update(created_at=old)
    Drawing.objects.filter(pk=poison.pk).update(prediction_attempts=MAX_ATTEMPTS)
    assert drawings_waiting() == [waiting.pk]

    client = redis.Redis.from_url(TEST_REDIS_URL)
    lock = f"test-sweep-{uuid.uuid4().hex[:8]}"
    queued: list[list[int]] = []
    try:
        assert Sweeper(client, lock, queued.append).sweep_once() == 1
        assert queued == [[waiting.pk]] and fresh.pk not in queued[0]
        assert Sweeper(client, lock, queued.append).sweep_once() == 0, "a second sweeper did not wait for the lock"
    finally:
        client.delete(lock)


def test_the_prediction_is_queued_after_the_commit_not_before() -> None:
    queued: list[list[int]] = []
    row = store(5, "after-commit", queued)
    # pytest-django's test transaction never commits: nothing may have been queued yet
    assert queued == [] and Drawing.objects.filter(pk=row.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_a_fill_gives_up_on_rows_a_hung_database_keeps_locked() -> None:
    """The worker that fills drawings in also reads uploads: it waits DRAWING_FILL_LOCK_WAIT_S for a
    locked table, not as long as the lock lasts, and leaves the rows waiting for the sweep."""
    row = store(4, f"locked-{uuid.uuid4().hex[:6]}")
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:  # another connection, as another process would hold it
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                if other.vendor == "postgresql":  # EXCLUSIVE: reads go on, writes wait
                    cursor.execute("BEGIN")
                    cursor.execute(f"LOCK TABLE {Drawing._meta.db_table} IN EXCLUSIVE MODE")
                else:  # SQLite: the one writer
                    cursor.execute("BEGIN IMMEDIATE")
                locked.set()
                release.wait(20)
                cursor.execute("ROLLBACK")
        finally:
            other.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        assert drawings_fill(load_predictor(ROOT / "models"), [row.pk]) == 0
        waited = time.monotonic() - started
        assert waited < LOCK_WAIT_S + 1.5, waited
    finally:
        release.set()
        holder.join()
    row.refresh_from_db()
    assert row.predicted_at is None and row.prediction_attempts == 0  # still waiting, as the sweep finds it
