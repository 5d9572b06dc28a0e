"""Holding the drawings table locked from a test: the database 'hangs' for the service's processes;
and a stored drawing waiting for its prediction, its fill queued as a submit queues it."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import redis
from django.contrib.auth.models import Group
from django.db import connection, transaction

from contract.task_messages import task_message
from contract.tasks import FILL_TASK, TASK_QUEUES
from recognizer.models import Drawing
from recognizer.services import drawing_store
from scripts.stack import Stack
from tests.support.digit_paths import digit_strokes


@contextlib.contextmanager
def drawings_locked() -> Iterator[None]:
    """Hold back every insert into the drawings table until the block ends."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:  # EXCLUSIVE: reads go on, writes wait
                cursor.execute(f"LOCK TABLE {Drawing._meta.db_table} IN EXCLUSIVE MODE")
        else:  # SQLite: one writer at a time; this transaction is it until it ends
            Group.objects.create(name=f"lock-{uuid.uuid4().hex}")
        yield


def stored_drawing(digit: int, name: str) -> Drawing:
    """A drawing of `digit` stored, its prediction not asked for yet."""
    row, _ = drawing_store(
        client_id=f"{name}-{uuid.uuid4().hex[:8]}", strokes=digit_strokes(digit), canvas=(280, 280), brush=16, label=digit
    )
    return row


def queue_fill(service: Stack, pk: int) -> None:
    """The message a submit queues after its commit, as the web process sends it."""
    queue = TASK_QUEUES[FILL_TASK]
    broker = redis.Redis.from_url(service.redis_url)
    try:
        broker.lpush(f"{service.env['REDIS_PREFIX']}{queue}", task_message(FILL_TASK, queue, ([pk],), argsrepr=f"([{pk}],)"))
    finally:
        broker.close()
