"""Workers are counted from heartbeats in Redis: fresh ones count, stale and stopped ones do not."""
from __future__ import annotations

import time
import uuid

import pytest
import redis

from tests.conftest import TEST_REDIS_URL
from worker.heartbeat import HEARTBEAT_TTL_S, Heartbeat, beat, heartbeat_key, live_workers


@pytest.fixture
def client_and_key():
    client = redis.Redis.from_url(TEST_REDIS_URL)
    key = heartbeat_key(f"test-hb-{uuid.uuid4().hex[:8]}:")
    yield client, key
    client.delete(key)


def test_fresh_beats_count_per_queue_and_stale_ones_do_not(client_and_key) -> None:
    client, key = client_and_key
    now = time.time()
    beat(client, key, ["w1@inference", "w1@preprocess"], now=now)
    beat(client, key, ["w2@inference"], now=now - 1)
    beat(client, key, ["w3@inference"], now=now - HEARTBEAT_TTL_S - 1)  # missed its beats: dead
    assert live_workers(client, key, now=now) == {"inference": 2, "preprocess": 1}


def test_a_running_heartbeat_counts_and_a_stopped_one_is_gone_at_once(client_and_key) -> None:
    client, key = client_and_key
    hb = Heartbeat(TEST_REDIS_URL, key, "w9", ["inference"])
    hb.start()
    deadline = time.monotonic() + 3
    while live_workers(client, key) != {"inference": 1}:
        assert time.monotonic() < deadline, "the heartbeat never showed up"
        time.sleep(0.05)
    hb.stop()
    assert live_workers(client, key) == {}
