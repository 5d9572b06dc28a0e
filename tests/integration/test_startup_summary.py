"""`make run` (python -m scripts.stack) on the real stack: once healthy it prints a short summary (the
site, the admin, the workers per queue, the model), and no Celery banner, no "AXES: BEGIN" per
process and no "No directory at: .../staticfiles/" warning."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from scripts.stack import ROOT, UNTHROTTLED, redis_prefix_clear
from tests.conftest import TEST_REDIS_URL, database_url, free_port

pytestmark = pytest.mark.integration


def test_make_run_prints_a_summary_and_no_banners(django_db_setup, django_db_blocker) -> None:
    from django.db import connection

    with django_db_blocker.unblock():
        db_url = database_url(connection.settings_dict)
    port, prefix = free_port(), f"test-{uuid.uuid4().hex[:8]}:"
    env = {
        **os.environ,
        **UNTHROTTLED,
        "DATABASE_URL": db_url,
        "REDIS_URL": TEST_REDIS_URL,
        "REDIS_PREFIX": prefix,
        "AUTOSCALE": "off",
        "WEB_PROCESSES": "1",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "scripts.stack", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and not any("model:" in line for line in lines) and proc.poll() is None:
            time.sleep(0.2)
        time.sleep(3)  # anything printed just after (spares loading)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(timeout=10)
        redis_prefix_clear(TEST_REDIS_URL, prefix)
    output = "".join(lines)
    url = f"http://127.0.0.1:{port}"
    assert f"Digit recognizer running at {url}/" in output, output[-3000:]
    assert f"admin:    {url}/admin/" in output
    assert "workers:  preprocess 1, inference 1" in output
    assert "model:    cnn-" in output
    for noise in ("No directory at", "[queues]", "celery@", "AXES: BEGIN", "Listening on TCP address"):
        assert noise not in output, (noise, output[-3000:])
