"""/healthz says 503 and names what is down: here Redis (nothing listens) and so the workers."""

import time

import pytest
import requests

from scripts.stack import Stack
from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_healthz_is_503_and_names_what_is_down(stack, tmp_path):
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    web_only = Stack(port=free_port(), redis_url=dead_redis, start_redis=False, log_dir=tmp_path, workers={}, env=stack.env)
    web_only.start(wait=False)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                resp = requests.get(f"{web_only.url}/healthz", timeout=10)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "daphne did not start"
                time.sleep(0.2)
        body = resp.json()
        assert resp.status_code == 503 and body["status"] == "down"
        assert body["redis"] is False and body["workers"] == 0 and body["database"] is True
    finally:
        web_only.stop()
