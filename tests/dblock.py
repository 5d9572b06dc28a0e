"""Holding the drawings table locked from a test: the database 'hangs' for the service's processes."""
from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

from django.contrib.auth.models import Group
from django.db import connection, transaction

from recognizer.models import Drawing


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
