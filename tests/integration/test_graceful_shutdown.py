"""SIGTERM to a web process loses nothing: submits in flight are stored and acknowledged, then every
socket gets a close frame (4001: the server restarts, reconnect), and the process exits within its drain time.

The database is held locked while the submits arrive and the signal is sent, so every one of them is
still being stored when the shutdown starts; the lock is released a moment later."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed

from recognizer.consumers import CLOSE_RESTARTING
from recognizer.models import Drawing
from scripts.stack import Stack
from tests.conftest import stack_of_its_own
from tests.support.dblock import drawings_locked
from tests.support.digit_paths import digit_strokes
from tests.support.wsclient import ProtocolClient

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CLIENTS = 10


@pytest.fixture
def service(stack, tmp_path) -> Iterator[Stack]:
    """A service of this test's own: the test stops (part of) it."""
    with stack_of_its_own("drain", stack.env, tmp_path) as own:
        yield own


def test_sigterm_stores_and_acknowledges_submits_in_flight_then_closes_politely(service):
    clients: list[ProtocolClient] = []
    try:
        [web] = [p for name, p in service.procs if name == "web"]
        drawings = {}
        for n in range(CLIENTS):
            client = ProtocolClient(service.url)
            clients.append(client)
            drawing = f"drain-{uuid.uuid4().hex[:8]}"
            last = client.stream(digit_strokes(n % 10), drawing=drawing, batch=1000)
            client.prediction_for(last)
            drawings[drawing] = client
        with drawings_locked():
            seqs = {d: c.send(type="submit", drawing=d, label=n % 10) for n, (d, c) in enumerate(drawings.items())}
            time.sleep(0.3)  # the submits reach the web process and wait for the database
            signalled = time.monotonic()
            os.killpg(web.pid, signal.SIGTERM)
            time.sleep(1.0)  # the drain waits for them
        for drawing, client in drawings.items():
            msgs = client.until(lambda m: m["type"] in ("stored", "error") and m.get("seq") == seqs[drawing], 15)
            assert msgs[-1]["type"] == "stored", msgs[-1]
            with pytest.raises(ConnectionClosed) as closed:
                client.recv(timeout=15)
            assert closed.value.rcvd is not None, "closed without a close frame"
            assert closed.value.rcvd.code == CLOSE_RESTARTING, closed.value.rcvd
        web.wait(timeout=15)
        print(f"web process exited {time.monotonic() - signalled:.2f} s after SIGTERM")  # noqa: T201 - the measurement, shown by pytest -s
        stored = Drawing.objects.filter(client_id__in=list(drawings))
        assert stored.count() == CLIENTS
    finally:
        for client in clients:
            client.close()


def test_stopping_the_stack_drains_the_web_processes_before_the_workers(service):
    """`make run` stopped (Ctrl-C) with a submit in flight: stored, acknowledged, socket closed politely."""
    client = ProtocolClient(service.url)
    try:
        drawing = f"drain-{uuid.uuid4().hex[:8]}"
        last = client.stream(digit_strokes(3), drawing=drawing, batch=1000)
        client.prediction_for(last)
        with drawings_locked():
            seq = client.send(type="submit", drawing=drawing, label=3)
            time.sleep(0.3)
            stopper = threading.Thread(target=service.stop)
            stopper.start()
            time.sleep(1.0)
        msgs = client.until(lambda m: m["type"] in ("stored", "error") and m.get("seq") == seq, 15)
        assert msgs[-1]["type"] == "stored", msgs[-1]
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=15)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == CLOSE_RESTARTING
        stopper.join(timeout=30)
        assert not stopper.is_alive()
        assert Drawing.objects.filter(client_id=drawing).count() == 1
    finally:
        client.close()
