"""Task names, queues and routes: what the web processes publish and the workers consume.

The web side publishes by these names and never imports worker code; digitsite/celery.py declares
the queues and routes from here, so they are written in one place.
"""

from __future__ import annotations

from typing import Any

JOB_EXPIRES_S = 30  # a batch nobody can wait for any more is dropped, not run
MAX_BATCH = 64  # jobs per task message: bounds one worker step (and one forward pass)

PREPROCESS_TASK = "worker.tasks.preprocess"  # decode uploads (up to 10-30 ms each): their own queue
PREDICT_TASK = "worker.tasks.predict"  # strokes or ready 28x28 images -> predictions
HEAT_MAP_TASK = "worker.tasks.heat_map"  # heat maps of predictions already shown: off the live path
# Stored drawings (by primary key) -> their predictions. Filling one in writes to the database, and a
# hung database holds its worker: on the preprocess queue, never in front of a live prediction.
FILL_TASK = "worker.tasks.fill_drawings"

PREPROCESS_QUEUE = "preprocess"
PREDICT_QUEUE = "inference"
QUEUES = (PREPROCESS_QUEUE, PREDICT_QUEUE)
TASK_QUEUES = {
    PREPROCESS_TASK: PREPROCESS_QUEUE,
    HEAT_MAP_TASK: PREPROCESS_QUEUE,
    FILL_TASK: PREPROCESS_QUEUE,
    PREDICT_TASK: PREDICT_QUEUE,
}


def task_routes(*, durable_fills: bool) -> dict[str, dict[str, Any]]:
    """Celery's task_routes: each task to its queue. With `durable_fills` (a broker other than Redis,
    whose live jobs are transient), stored drawings' fills are persistent: kept across a broker restart."""
    routes: dict[str, dict[str, Any]] = {task: {"queue": queue} for task, queue in TASK_QUEUES.items()}
    if durable_fills:
        routes[FILL_TASK]["delivery_mode"] = "persistent"
    return routes
