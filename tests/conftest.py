"""Fixtures that start the real parts: Redis (the machine's or the bundled one), Celery worker
processes on both queues and daphne, all through scripts.stack as `make run` does.

Every test also gets markers for what it needs (pytest_collection_modifyitems): `database` (the test database),
`redis` (the machine's Redis), `server` (a server process of its own), `heavy` (the MNIST data set, or training a
network), besides the `integration` and `browser` ones its module sets; a test that needs none of them is a `unit`
test (`make test-unit`)."""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.stack import UNTHROTTLED, Stack, redis_prefix_clear

ROOT = Path(__file__).resolve().parent.parent
MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"
ARTIFACTS = ROOT / "test-artifacts"
# A Redis database of its own so the tests never touch a running service's queues.
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
METRICS_TOKEN = "test-metrics-token"


# What a test needs, read from its markers and fixtures (pytest.ini describes the markers).
DATABASE_FIXTURES = {"db", "transactional_db", "django_db_setup", "django_db_reset_sequences", "django_db_serialized_rollback",
                     "live_server", "admin_user", "admin_client", "django_user_model", "stack"}  # fmt: skip
SERVER_FIXTURES = {"stack", "server", "live_server"}
TRAINING_TESTS = ROOT / "tests" / "digits" / "training"
NEEDS_MARKERS = ("integration", "browser", "database", "redis", "server", "heavy")


def _names_test_redis(item: pytest.Item) -> bool:
    """The test, or its module, names TEST_REDIS_URL: it talks to the machine's Redis."""
    function = getattr(item, "function", None)
    code = getattr(function, "__code__", None)
    return "TEST_REDIS_URL" in vars(getattr(item, "module", None) or object) or (
        code is not None and "TEST_REDIS_URL" in code.co_names
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("django_db") or fixtures & DATABASE_FIXTURES:
            item.add_marker(pytest.mark.database)
        if _names_test_redis(item):
            item.add_marker(pytest.mark.redis)
        if fixtures & SERVER_FIXTURES:
            item.add_marker(pytest.mark.server)
        if "mnist_dir" in fixtures or TRAINING_TESTS in item.path.parents:
            item.add_marker(pytest.mark.heavy)
        if not any(item.get_closest_marker(name) for name in NEEDS_MARKERS):
            item.add_marker(pytest.mark.unit)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url(settings_dict: dict) -> str:
    """The test database as a DATABASE_URL for the server processes."""
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or ""
    auth = f"{user}:{settings_dict['PASSWORD']}@" if settings_dict.get("PASSWORD") else f"{user}@" if user else ""
    return f"postgres://{auth}{settings_dict['HOST']}:{settings_dict['PORT'] or 5432}/{settings_dict['NAME']}"


@pytest.fixture(scope="session")
def stack(django_db_setup, django_db_blocker, tmp_path_factory):
    """The whole service on a free port, against the test database."""
    from django.db import connection

    with django_db_blocker.unblock():
        db_url = database_url(connection.settings_dict)
    prefix = f"test-{uuid.uuid4().hex[:8]}:"  # concurrent test runs on one Redis stay apart
    service = Stack(
        port=free_port(),
        redis_url=TEST_REDIS_URL,
        env={
            "DATABASE_URL": db_url,
            "REDIS_PREFIX": prefix,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            # every test client comes from 127.0.0.1: the per-address limits are checked on stacks
            # of their own (tests/integration/test_limits_per_address.py)
            **UNTHROTTLED,
            # /metrics: from 127.0.0.1 as is, from other addresses with the token (tests/integration/test_metrics.py)
            "METRICS_TOKEN": METRICS_TOKEN,
            "METRICS_ALLOWED_NETWORKS": "127.0.0.1/32",
        },
        log_dir=tmp_path_factory.mktemp("stack-logs"),
    )
    try:
        service.start(timeout=120)
    except Exception:
        _dump_logs(service)
        service.stop()
        raise
    yield service
    service.stop()
    redis_prefix_clear(TEST_REDIS_URL, prefix)  # leave the machine's Redis as we found it


@contextlib.contextmanager
def stack_of_its_own(name: str, env: dict[str, str], log_dir: Path, **kwargs: Any) -> Iterator[Stack]:
    """Another running service beside the session's (on the test database, e.g. with other limits),
    with a Redis key prefix of its own, removed afterwards. `env`: the session stack's, changed."""
    prefix = f"test-{name}-{uuid.uuid4().hex[:8]}:"
    service = Stack(port=free_port(), redis_url=TEST_REDIS_URL, log_dir=log_dir, env={**env, "REDIS_PREFIX": prefix}, **kwargs)
    service.start(timeout=120)
    try:
        yield service
    finally:
        service.stop()
        redis_prefix_clear(TEST_REDIS_URL, prefix)


def _dump_logs(service: Stack) -> None:
    if service.log_dir:
        for log in sorted(service.log_dir.glob("*.log")):
            print(f"==== {log.name}\n{log.read_text(errors='replace')[-4000:]}")  # noqa: T201 - the stack's logs, shown with the failed start's report


@pytest.fixture
def ws(stack):
    from tests.support.wsclient import ProtocolClient

    client = ProtocolClient(stack.url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    assert (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(), f"MNIST data expected in {MNIST_DIR}"
    return MNIST_DIR
