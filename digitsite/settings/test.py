"""Test settings (pytest.ini): the local ones, with test databases that concurrent test runs never share.

The test servers the integration tests start (scripts.stack, as subprocesses) are handed the test database as
DATABASE_URL (tests/conftest.py), so it must be a file, not SQLite's :memory:.
"""

import os

from digitsite.settings.base import BASE_DIR, DATABASES
from digitsite.settings.local import *  # noqa: F403

if DATABASES["default"]["ENGINE"] == "digitsite.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f".test-db-{os.getpid()}.sqlite3")}
else:
    # One test database per test run, so that runs against one server (CI beside a developer's run) never
    # drop each other's database.
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"}
