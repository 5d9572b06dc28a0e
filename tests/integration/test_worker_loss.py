"""A job lost with its worker is not lost to the person drawing: the consumer sends it again.

The broker runs without kombu's ack emulation (digitsite/settings/base.py), so a message a worker has
taken is gone if that worker dies. Here the inference worker is killed, the job that reaches its
queue is deleted (what a crash after taking it would leave), and a new worker is started: the
prediction must still arrive, after the consumer's timeout, with no error.
"""

import os
import signal
import time
import uuid

import pytest
import redis
import requests

from scripts.stack import Stack
from tests.conftest import TEST_REDIS_URL, free_port
from tests.support.digit_paths import digit_strokes
from tests.support.wsclient import ProtocolClient

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TIMEOUT_S = 6  # long enough for a new worker to start before the retried job would time out


def test_a_job_lost_with_its_worker_is_sent_again(stack, tmp_path):
    prefix = f"test-loss-{uuid.uuid4().hex[:8]}:"
    service = Stack(
        port=free_port(),
        redis_url=TEST_REDIS_URL,
        log_dir=tmp_path,
        env={**stack.env, "REDIS_PREFIX": prefix, "WS_PREDICTION_TIMEOUT_S": str(TIMEOUT_S)},
    )
    broker = redis.Redis.from_url(TEST_REDIS_URL)
    service.start(timeout=120)
    try:
        [(name, worker)] = [(n, p) for n, p in service.procs if n.startswith("worker-inference")]
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        service.procs.remove((name, worker))
        # /healthz reads the workers' heartbeats: the dead one drops out within their TTL
        deadline = time.monotonic() + 10
        while (health := requests.get(f"{service.url}/healthz", timeout=5)).status_code != 503:
            assert time.monotonic() < deadline, f"/healthz still says {health.json()} with no inference worker"
            time.sleep(0.2)
        assert health.json()["workers_per_queue"] == {"preprocess": 1, "inference": 0}
        assert requests.get(f"{service.url}/livez", timeout=5).status_code == 200

        client = ProtocolClient(service.url)
        try:
            started = time.monotonic()
            last = client.stream(digit_strokes(7), drawing="lost-once", batch=1000)
            deadline = time.monotonic() + 10
            while not broker.llen(f"{prefix}inference"):  # the job waits where no worker takes it
                assert time.monotonic() < deadline, "the job never reached the inference queue"
                time.sleep(0.05)
            assert broker.delete(f"{prefix}inference") == 1  # ...and is lost, as with a crashed worker

            service.add_worker("inference")
            final, seen = client.prediction_for(last, timeout=3 * TIMEOUT_S)
            assert not [m for m in seen if m["type"] == "error"], seen
            assert final["seq"] == last and final["digit"] == 7
            assert time.monotonic() - started >= TIMEOUT_S - 0.5, "answered before the retry: the job was not lost"
        finally:
            client.close()
    finally:
        service.stop()
        for key in broker.scan_iter(match=f"{prefix}*"):
            broker.delete(key)
