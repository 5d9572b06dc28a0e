"""Django's SQLite backend, with the database file created readable by its owner only (0600).

The file holds sessions and password hashes. SQLite creates a file that is not there with the
process's umask (0644 as a rule) and gives its -wal and -shm files the database file's mode, so the
file is made 0600 before SQLite first opens it; an existing file is left as its owner set it.
"""

from __future__ import annotations

import os
from typing import Any

from django.db.backends.sqlite3 import base

FILE_MODE = 0o600


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        name = str(conn_params.get("database", ""))
        if name and name != ":memory:" and not name.startswith("file:") and not os.path.exists(name):
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        return super().get_new_connection(conn_params)
