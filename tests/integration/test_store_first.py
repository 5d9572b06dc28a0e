"""A submit needs no working recogniser: with the workers down, drawings are stored at once and
get their predictions when workers come back, also when the message asking for them was lost."""

import time
import uuid

import pytest
import redis
import requests

from contract.tasks import FILL_TASK, TASK_QUEUES
from recognizer.models import Drawing
from scripts.stack import Stack
from tests.conftest import TEST_REDIS_URL, free_port
from tests.support.digit_paths import digit_strokes
from tests.support.wsclient import ProtocolClient

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


SUBMITS, DOWN_S = 20, 30.0  # issue 12: workers down 30 s, 20 submits


def test_submits_are_stored_with_the_workers_down_and_predicted_when_they_return(stack, tmp_path):
    prefix = f"test-store-{uuid.uuid4().hex[:8]}:"
    service = Stack(
        port=free_port(),
        redis_url=TEST_REDIS_URL,
        log_dir=tmp_path,
        workers={},
        env={**stack.env, "REDIS_PREFIX": prefix, "DRAWING_SWEEP_S": "1"},
    )
    broker = redis.Redis.from_url(TEST_REDIS_URL)
    service.start(wait=False)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{service.url}/livez", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "daphne did not start"
            time.sleep(0.2)
        down_since = time.monotonic()
        client = ProtocolClient(service.url)
        ids = {}
        try:
            for n in range(SUBMITS):
                digit = n % 10
                client.stream(digit_strokes(digit), drawing=f"down{n}", batch=1000)
                seq = client.send(type="submit", drawing=f"down{n}", label=digit)
                started = time.monotonic()
                stored = client.until(lambda m: m["type"] == "stored" or m.get("code") == "store_failed", timeout=10)[-1]
                assert stored["type"] == "stored" and stored["seq"] == seq, stored
                assert time.monotonic() - started < 2, "a submit waited for the (absent) recogniser"
                ids[stored["id"]] = digit
        finally:
            client.close()
        assert Drawing.objects.filter(pk__in=ids, predicted_at__isnull=True).count() == SUBMITS
        time.sleep(max(0.0, DOWN_S - (time.monotonic() - down_since)))  # the outage, in full

        queue = TASK_QUEUES[FILL_TASK]
        assert broker.llen(f"{prefix}{queue}") >= 1  # the predictions asked for wait in the queue...
        broker.delete(f"{prefix}{queue}")  # ...and are lost, as with a broker restart: the sweep must find them
        service.add_worker(queue)
        deadline = time.monotonic() + 60
        while Drawing.objects.filter(pk__in=ids, predicted_at__isnull=True).exists():
            assert time.monotonic() < deadline, "stored drawings were never predicted"
            time.sleep(0.25)
        for row in Drawing.objects.filter(pk__in=ids):
            assert row.predicted_digit == ids[row.pk], (row.pk, row.predicted_digit, ids[row.pk])
            assert bytes(row.png).startswith(b"\x89PNG")
    finally:
        service.stop()
        for key in broker.scan_iter(match=f"{prefix}*"):
            broker.delete(key)
