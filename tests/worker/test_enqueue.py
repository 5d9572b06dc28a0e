"""A worker's next hop (worker.enqueue): one LPUSH of the Celery message into the queue's list, or
Celery's own apply_async with PUBLISH_VIA=celery."""

from __future__ import annotations

import uuid

import pytest
import redis

from contract.jobs import HEAT_TASK, PREPARE_QUEUE
from tests.conftest import TEST_REDIS_URL
from tests.recognizer.test_publish import batch, decode
from worker import enqueue as enqueue_module
from worker.enqueue import enqueue
from worker.tasks import heat


@pytest.fixture
def prefix(settings, monkeypatch):
    prefix = f"test-enqueue-{uuid.uuid4().hex[:8]}:"
    settings.CELERY_BROKER_URL, settings.REDIS_PREFIX = TEST_REDIS_URL, prefix
    monkeypatch.setattr(enqueue_module, "_state", None)  # a client for this broker URL
    yield prefix
    r = redis.Redis.from_url(TEST_REDIS_URL)
    for key in r.scan_iter(match=f"{prefix}*"):
        r.delete(key)


def test_the_message_is_pushed_into_the_queues_list(settings, prefix):
    settings.PUBLISH_VIA = "redis"
    wire = batch().to_wire()
    enqueue(heat, PREPARE_QUEUE, wire, 2.0)
    [raw] = redis.Redis.from_url(TEST_REDIS_URL).lrange(f"{prefix}{PREPARE_QUEUE}", 0, -1)
    envelope, (args, kwargs, _) = decode(raw)
    assert envelope["headers"]["task"] == HEAT_TASK and envelope["headers"]["expires"]
    assert envelope["properties"]["delivery_info"]["routing_key"] == PREPARE_QUEUE
    assert args == [wire] and kwargs == {}


def test_publish_via_celery_uses_apply_async(settings, prefix, monkeypatch):
    settings.PUBLISH_VIA = "celery"
    calls = []
    monkeypatch.setattr(heat, "apply_async", lambda *a, **kw: calls.append((a, kw)))
    wire = batch().to_wire()
    enqueue(heat, PREPARE_QUEUE, wire, 2.0)
    assert calls == [(((wire,),), {"queue": PREPARE_QUEUE, "expires": 2.0, "argsrepr": calls[0][1]["argsrepr"]})]
    assert not redis.Redis.from_url(TEST_REDIS_URL).exists(f"{prefix}{PREPARE_QUEUE}")
