"""Workers are counted from heartbeats in Redis: fresh ones count, stale and stopped ones do not."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from contract.heartbeats import HEARTBEAT_TTL_S, heartbeat_key, live_workers, rss_key, worker_details
from tests.conftest import TEST_REDIS_URL
from worker.heartbeat import BusyClock, Heartbeat, beat, rss_bytes


@pytest.fixture
def client_and_key():
    client = redis.Redis.from_url(TEST_REDIS_URL)
    key = heartbeat_key(f"test-hb-{uuid.uuid4().hex[:8]}:")
    yield client, key
    client.delete(key, f"{key}:models", f"{key}:rss", f"{key}:busy")


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


def test_worker_details_give_each_live_workers_queues_model_and_memory(client_and_key) -> None:
    client, key = client_and_key
    now = time.time()
    beat(client, key, ["w1@inference"], now=now, worker="w1", model="cnn-a", rss=300_000_000)
    beat(client, key, ["w2@preprocess", "w2@inference"], now=now, worker="w2", rss=200_000_000)
    beat(client, key, ["w3@inference"], now=now - HEARTBEAT_TTL_S - 1, worker="w3", model="cnn-a", rss=1)  # dead
    details = worker_details(client, key, now=now)
    assert [(d.name, d.queues, d.model, d.rss_bytes) for d in details] == [
        ("w1", ("inference",), "cnn-a", 300_000_000),
        ("w2", ("inference", "preprocess"), None, 200_000_000),
    ]


def test_a_running_heartbeat_reports_its_process_memory_and_forgets_it_when_stopped(client_and_key) -> None:
    client, key = client_and_key
    hb = Heartbeat(TEST_REDIS_URL, key, "w8", ["inference"], serving=lambda: "cnn-b")
    hb.start()
    deadline = time.monotonic() + 3
    while not (details := worker_details(client, key)):
        assert time.monotonic() < deadline, "the heartbeat never showed up"
        time.sleep(0.05)
    assert details[0].model == "cnn-b" and 10 * 2**20 < (details[0].rss_bytes or 0) < 64 * 2**30
    assert abs((details[0].rss_bytes or 0) - rss_bytes()) < 256 * 2**20  # this process's, give or take
    hb.stop()
    assert worker_details(client, key) == [] and client.hget(rss_key(key), "w8") is None


def test_the_busy_clock_counts_time_in_tasks_only_and_the_beat_carries_it(client_and_key) -> None:
    client, key = client_and_key
    clock = BusyClock()
    clock.begin()
    time.sleep(0.05)
    clock.end()
    time.sleep(0.05)  # idle: not counted
    assert 0.045 <= clock.seconds() < 0.09
    clock.begin()
    time.sleep(0.02)
    assert clock.seconds() >= 0.065  # a task under way counts so far
    clock.end()
    beat(client, key, ["w1@inference"], worker="w1", busy_s=clock.seconds())
    assert worker_details(client, key)[0].busy_s == pytest.approx(clock.seconds(), abs=1e-3)
