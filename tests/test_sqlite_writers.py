"""SQLite as `make run` uses it without DATABASE_URL: transactions that read and then write (a
submit's idempotency check and insert, beside the workers' fills) wait their turn instead of failing
with "database is locked". Runs on a SQLite file of its own whatever the test database is."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import OperationalError, connections, transaction

from digitsite.settings.base import SQLITE_OPTIONS

ALIAS = "sqlite_writers"
WRITERS = 4


def read_then_write(path: Path, options: dict[str, Any]) -> list[str]:
    """WRITERS threads at once, each a transaction: a read, a pause, a write; the errors they got."""
    connections.settings[ALIAS] = {
        **connections.settings["default"],
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        "OPTIONS": dict(options),
        "TEST": {},
    }
    errors: list[str] = []
    try:
        with connections[ALIAS].cursor() as cursor:
            cursor.execute("CREATE TABLE drawings (id INTEGER PRIMARY KEY, client_id TEXT UNIQUE)")
        connections[ALIAS].close()

        def submit(n: int) -> None:
            try:
                with transaction.atomic(using=ALIAS), connections[ALIAS].cursor() as cursor:
                    cursor.execute("SELECT count(*) FROM drawings WHERE client_id = %s", [f"d{n}"])
                    time.sleep(0.2)  # the others' transactions begin meanwhile
                    cursor.execute("INSERT INTO drawings (client_id) VALUES (%s)", [f"d{n}"])
            except OperationalError as exc:
                errors.append(str(exc))
            finally:
                connections[ALIAS].close()

        threads = [threading.Thread(target=submit, args=(n,)) for n in range(WRITERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        with connections[ALIAS].cursor() as cursor:
            cursor.execute("SELECT count(*) FROM drawings")
            rows = cursor.fetchone()[0]
        connections[ALIAS].close()
        assert rows == WRITERS - len(errors)
        return errors
    finally:
        with contextlib.suppress(AttributeError):
            del connections[ALIAS]  # this thread's wrapper (the writers' went with their threads)
        del connections.settings[ALIAS]


@pytest.fixture
def unblocked(django_db_blocker):
    with django_db_blocker.unblock():
        yield


def test_concurrent_read_then_write_transactions_all_commit(tmp_path, unblocked):
    assert read_then_write(tmp_path / "service.sqlite3", SQLITE_OPTIONS) == []


def test_with_sqlites_default_transactions_they_fail_at_once(tmp_path, unblocked):
    # what the service's settings prevent (and so what the test above would catch)
    defaults = {k: v for k, v in SQLITE_OPTIONS.items() if k != "transaction_mode"}
    assert any("locked" in e for e in read_then_write(tmp_path / "defaults.sqlite3", defaults))
