"""A database of a bench's own: migrated, thrown away afterwards.

A bench's stack must not write into the database of the service a user runs (db.sqlite3, or the
DATABASE_URL set), and an unmigrated one makes every worker log, once a second, that it cannot read
the serving choice. Django's test-database machinery makes one beside the configured database
(SQLite: a file in the project; PostgreSQL: test_<name>_<pid>).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def database_url(settings_dict: dict[str, Any]) -> str:
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or ""
    auth = f"{user}:{settings_dict['PASSWORD']}@" if settings_dict.get("PASSWORD") else f"{user}@" if user else ""
    return f"postgres://{auth}{settings_dict['HOST']}:{settings_dict['PORT'] or 5432}/{settings_dict['NAME']}"


@contextlib.contextmanager
def throwaway_database() -> Iterator[str]:
    """A migrated database of the bench's own, as a DATABASE_URL for the stack's environment."""
    # Nothing a bench's database holds is signed; the settings only refuse to start without a key.
    os.environ.setdefault("DJANGO_SECRET_KEY", "the-bench-signs-nothing")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "digitsite.settings.local")
    import django

    django.setup()
    from django.db import connection

    if connection.vendor == "sqlite":  # a file the stack's processes can open (Django's default is in memory)
        root = Path(__file__).resolve().parent.parent
        connection.settings_dict["TEST"]["NAME"] = str(root / f".bench-db-{os.getpid()}.sqlite3")
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    test_name = connection.settings_dict["NAME"]
    try:
        yield database_url(connection.settings_dict)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        if connection.vendor == "sqlite":  # WAL mode's files outlive the database Django removes
            for suffix in ("-wal", "-shm"):
                Path(f"{test_name}{suffix}").unlink(missing_ok=True)
