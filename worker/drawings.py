"""Stored drawings get their predictions here: in a batch after each submit, and by a sweep.

A submit stores the drawing first and queues its primary key after the commit; if that message is
lost (broker down, worker killed), the sweep finds rows still waiting and queues them again, up to
MAX_ATTEMPTS times (a row that fails that often is left for a person to look at in the admin).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

import redis
from django.conf import settings
from django.db import close_old_connections
from django.db.models import F
from django.utils import timezone

from recognizer.models import Drawing
from recognizer.services import drawing_record_prediction
from worker import pipeline
from worker.jobs import MAX_BATCH, Job, Strokes

log = logging.getLogger(__name__)

SWEEP_S = settings.DRAWING_SWEEP_S  # how often waiting rows are looked for
WAITING_S = settings.DRAWING_SWEEP_S  # a row waiting this long has lost its message
MAX_ATTEMPTS = 5


def drawings_fill(model: pipeline.Model, pks: list[int]) -> int:
    """Predict the stored drawings `pks` still waiting, in one forward pass; returns how many."""
    rows = list(Drawing.objects.filter(pk__in=pks, predicted_at__isnull=True)
                .only("pk", "strokes", "canvas_width", "canvas_height", "brush"))
    if not rows:
        return 0
    Drawing.objects.filter(pk__in=[r.pk for r in rows]).update(prediction_attempts=F("prediction_attempts") + 1)
    jobs = [Job(id=str(r.pk), client="", reply="", png=True,
                strokes=Strokes(r.strokes, (r.canvas_width, r.canvas_height), r.brush)) for r in rows]
    filled = 0
    for answer in pipeline.predict_jobs(model, jobs, model_name=model.name):
        if answer.prediction is None:
            log.warning("drawing %s: no prediction (%s)", answer.id, answer.error)
            continue
        filled += drawing_record_prediction(pk=int(answer.id), prediction=answer.prediction.to_wire(),
                                            image28=answer.image, png=answer.png or b"")
    return filled


def drawings_waiting(*, older_than_s: float = WAITING_S, limit: int = 1000) -> list[int]:
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    return list(Drawing.objects.filter(predicted_at__isnull=True, created_at__lt=cutoff,
                                       prediction_attempts__lt=MAX_ATTEMPTS)
                .order_by("created_at").values_list("pk", flat=True)[:limit])


class Sweeper:
    """A worker's thread that queues waiting rows again; one sweep at a time across all workers
    (a Redis lock), so several inference workers do not queue the same rows."""

    def __init__(self, client: redis.Redis, lock_key: str, enqueue: Callable[[list[int]], None]) -> None:
        self._client, self._lock_key, self._enqueue = client, lock_key, enqueue
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drawing-sweep", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def sweep_once(self) -> int:
        if not self._client.set(self._lock_key, "1", nx=True, ex=max(1, int(SWEEP_S) - 1)):
            return 0
        pks = drawings_waiting()
        for i in range(0, len(pks), MAX_BATCH):
            self._enqueue(pks[i:i + MAX_BATCH])
        if pks:
            log.info("queued %d stored drawings still waiting for their prediction", len(pks))
        return len(pks)

    def _run(self) -> None:
        while not self._stop.wait(SWEEP_S):
            try:
                close_old_connections()
                self.sweep_once()
            except Exception as exc:  # database or Redis away: try again next round
                log.warning("sweep failed: %s", exc)
