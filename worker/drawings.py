"""Stored drawings get their predictions here: in a batch after each submit, and by a sweep.

A submit stores the drawing first and queues its primary key after the commit; if that message is
lost (broker down, worker killed), the sweep finds rows still waiting and publishes them again, up to
MAX_ATTEMPTS times (a row that fails that often is left for a person to look at in the admin).

The worker that fills drawings in also reads uploads and heat maps, so its writes wait at most
DRAWING_FILL_LOCK_WAIT_S for a lock: on a hung database the rows are left to a later sweep instead
of holding everything queued behind them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from datetime import timedelta

import redis
from django.conf import settings
from django.db import OperationalError, close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from contract.jobs import DrawingJob, PredictionAnswer, Strokes
from contract.tasks import MAX_BATCH
from digitsite.periodic import Periodic
from recognizer.models import Drawing
from recognizer.services import drawing_record_prediction
from worker import pipeline

log = logging.getLogger(__name__)

SWEEP_S = settings.DRAWING_SWEEP_S  # how often waiting rows are looked for
WAITING_S = settings.DRAWING_SWEEP_S  # a row waiting this long has lost its message
MAX_ATTEMPTS = 5
LOCK_WAIT_S = settings.DRAWING_FILL_LOCK_WAIT_S


@contextlib.contextmanager
def lock_waits_bounded(seconds: float) -> Iterator[None]:
    """A transaction whose statements give up waiting for a lock after `seconds`: PostgreSQL's
    lock_timeout for this transaction; SQLite's busy timeout for this connection meanwhile (its
    transactions take the write lock as they begin)."""
    ms = max(1, round(seconds * 1000))
    if connection.vendor != "sqlite":
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute(f"SET LOCAL lock_timeout = {ms}")
            yield
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        before = int(cursor.fetchone()[0])
        cursor.execute(f"PRAGMA busy_timeout = {ms}")
    try:
        with transaction.atomic():
            yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA busy_timeout = {before}")


def drawings_fill(model: pipeline.Model, pks: list[int]) -> int:
    """Predict the stored drawings `pks` still waiting, in one forward pass; returns how many (0 when
    the database kept their rows locked: they stay waiting for the sweep)."""
    rows = list(
        Drawing.objects.filter(pk__in=pks, predicted_at__isnull=True).only(
            "pk", "strokes", "canvas_width", "canvas_height", "brush"
        )
    )
    if not rows:
        return 0
    try:
        # counted before predicting, so a drawing that crashes its worker is not asked for forever
        with lock_waits_bounded(LOCK_WAIT_S):
            Drawing.objects.filter(pk__in=[r.pk for r in rows]).update(prediction_attempts=F("prediction_attempts") + 1)
        jobs = [
            DrawingJob(
                id=str(r.pk),
                client="",
                reply="",
                png=True,
                strokes=Strokes(r.strokes, (r.canvas_width, r.canvas_height), r.brush),
            )
            for r in rows
        ]
        answers = pipeline.predict_jobs(model, jobs, model_name=model.name)
        filled = 0
        with lock_waits_bounded(LOCK_WAIT_S):
            for answer in answers:
                if not isinstance(answer, PredictionAnswer):
                    log.warning("drawing %s: no prediction (%s)", answer.id, getattr(answer, "error", None))
                    continue
                filled += drawing_record_prediction(
                    pk=int(answer.id), prediction=answer.prediction.to_wire(), image28=answer.image, png=answer.png or b""
                )
    except OperationalError as exc:  # a lock not granted in time (or the database away)
        log.warning("%d stored drawings left for the sweep: %s", len(rows), exc)
        return 0
    return filled


def drawings_waiting(*, older_than_s: float = WAITING_S, limit: int = 1000) -> list[int]:
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    return list(
        Drawing.objects.filter(predicted_at__isnull=True, created_at__lt=cutoff, prediction_attempts__lt=MAX_ATTEMPTS)
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )


class Sweeper:
    """A worker's thread that queues waiting rows again; one sweep at a time across all workers
    (a Redis lock), so several inference workers do not queue the same rows."""

    def __init__(self, client: redis.Redis, lock_key: str, publish: Callable[[list[int]], None]) -> None:
        self._client, self._lock_key, self._publish = client, lock_key, publish
        self._thread = Periodic("drawing-sweep", SWEEP_S, self._tick)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()

    def sweep_once(self) -> int:
        if not self._client.set(self._lock_key, "1", nx=True, ex=max(1, int(SWEEP_S) - 1)):
            return 0
        pks = drawings_waiting()
        for i in range(0, len(pks), MAX_BATCH):
            self._publish(pks[i : i + MAX_BATCH])
        if pks:
            log.info("queued %d stored drawings still waiting for their prediction", len(pks))
        return len(pks)

    def _tick(self) -> None:
        try:
            close_old_connections()
            self.sweep_once()
        except Exception as exc:  # database or Redis away: try again next round
            log.warning("sweep failed: %s", exc)
