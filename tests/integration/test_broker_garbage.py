"""A message in a queue that no Celery producer wrote (not JSON, or JSON of another shape) is dropped
with a log line; the worker that read it goes on serving (before: "Unrecoverable error", the worker
gone until restarted)."""

from __future__ import annotations

import time

import pytest
import redis

from tests.support.digit_paths import digit_strokes

pytestmark = pytest.mark.integration


def test_unreadable_messages_are_dropped_and_the_workers_go_on(stack, ws):
    client = redis.Redis.from_url(stack.redis_url)
    prefix = stack.env["REDIS_PREFIX"]
    pids = {name: proc.pid for name, proc in stack.procs if name.startswith("worker")}
    for queue in ("inference", "preprocess"):
        client.lpush(f"{prefix}{queue}", b"not json at all", b"{}", b"[1, 2]", b'{"body": 3}', b"\xff\xfe")
    deadline = time.monotonic() + 10
    while any(client.llen(f"{prefix}{q}") for q in ("inference", "preprocess")):
        assert time.monotonic() < deadline, "the workers did not take the messages"
        time.sleep(0.05)
    time.sleep(0.5)
    for name, proc in stack.procs:
        if name.startswith("worker"):
            assert proc.poll() is None and proc.pid == pids[name], f"{name} ended on an unreadable message"
    last = ws.stream(digit_strokes(2), drawing="after-garbage")
    final, _ = ws.prediction_for(last)
    assert final["digit"] == 2
