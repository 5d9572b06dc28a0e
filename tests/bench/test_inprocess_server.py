"""bench/: the in-process baseline server (started as bench/compare.py starts it), the capacity
search (bench/steps.py) and the /proc CPU accounting (bench/procstat.py) of bench/compare.py and bench/brokers.py."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from bench.compare import InProcessServer
from bench.procstat import cpu_sample, cpu_spent, listening_pid
from bench.steps import Capacity, capacity_search
from digits.inference.cards import current_model_name
from tests.support.digit_paths import digit_strokes
from tests.support.wsclient import ProtocolClient

ROOT = Path(__file__).resolve().parents[2]
PREDICTION_FIELDS = {
    "type",
    "drawing",
    "seq",
    "digit",
    "confidence",
    "probabilities",
    "model",
    "uncertain",
    "reason",
    "latency_ms",
    "image",
    "timings",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    srv = InProcessServer(workers=1, log_path=tmp_path_factory.mktemp("inprocess") / "uvicorn.log")
    srv.start(timeout=120)
    yield srv
    srv.stop()


@pytest.fixture
def ws(server: InProcessServer) -> Iterator[ProtocolClient]:
    client = ProtocolClient(server.url)
    yield client
    client.close()


@pytest.mark.parametrize("digit", [3, 7])
def test_every_stroke_message_gets_its_prediction_and_the_last_names_the_digit(ws: ProtocolClient, digit: int) -> None:
    last = ws.stream(digit_strokes(digit), drawing=f"d{digit}", batch=6)
    msgs = ws.until(lambda m: m["type"] == "saliency" and m["seq"] == last)
    predictions = [m for m in msgs if m["type"] == "prediction"]
    assert [p["seq"] for p in predictions] == list(range(1, last + 1))  # no coalescing, in order
    final = predictions[-1]
    assert set(final) == PREDICTION_FIELDS
    assert final["digit"] == digit and final["drawing"] == f"d{digit}"
    assert final["model"] == current_model_name(ROOT / "models")
    assert len(final["probabilities"]) == 10 and abs(sum(final["probabilities"]) - 1) < 1e-3
    assert final["confidence"] == max(final["probabilities"]) and final["uncertain"] is False and final["reason"] is None
    assert len(base64.b64decode(final["image"])) == 784
    assert set(final["timings"]) == {"queue_inference", "preprocess", "inference", "batch", "push"}  # as documented
    assert 0 <= final["latency_ms"] < 5000
    assert not [m for m in msgs if m["type"] == "error"]
    assert len(base64.b64decode(msgs[-1]["saliency"])) == 784  # pen up: the heat map follows, as in the service


def test_clear_gives_the_empty_prediction(ws: ProtocolClient) -> None:
    ws.stream(digit_strokes(1), drawing="one", batch=100)
    seq = ws.send(type="clear", drawing="one")
    pred, _ = ws.prediction_for(seq)
    assert pred["seq"] == seq and set(pred) == PREDICTION_FIELDS
    assert (pred["digit"], pred["probabilities"], pred["image"]) == (None, None, None)


def test_invalid_messages_get_an_error_and_the_socket_stays_open(ws: ProtocolClient) -> None:
    ws.send_raw("{not json")
    err = ws.recv()
    assert (err["type"], err["code"], err["seq"]) == ("error", "bad_json", None)
    ws.send(type="stroke", drawing="x", stroke=3, points=[[1, 2]], final=True, canvas=[280, 280], brush=16)
    assert ws.recv()["code"] == "bad_stroke"  # (seq null, as the service sends it: DrawingState's error)
    seq = ws.send(type="undo", drawing="x")
    assert ws.recv()["seq"] == seq  # the bad stroke changed nothing; undo of nothing is a prediction
    ws.send(type="submit", drawing="x", label=None)
    assert ws.recv()["code"] == "empty_drawing"  # checked like the service checks it
    seq = ws.stream(digit_strokes(7), drawing="y", batch=100)
    pred, _ = ws.prediction_for(seq)
    assert pred["digit"] == 7
    submit = ws.send(type="submit", drawing="y", label=7)
    err = ws.until(lambda m: m["type"] == "error")[-1]
    assert (err["code"], err["seq"]) == ("unavailable", submit)  # documented: this server stores nothing


@pytest.mark.parametrize("origin", ["http://evil.example", None])
def test_a_foreign_or_missing_origin_is_refused(server: InProcessServer, origin: str | None) -> None:
    ws_url = server.url.replace("http://", "ws://") + "/ws/recognize/"
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url, origin=origin, open_timeout=10).close()  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403


def test_capacity_search_climbs_then_bisects() -> None:
    tried: list[int] = []

    def passes(clients: int) -> bool:
        tried.append(clients)
        return clients <= 47

    cap = capacity_search(passes, ladder=[10, 20, 40, 60, 80], bisections=2)
    assert tried == [10, 20, 40, 60, 50, 45]
    assert cap == Capacity(45, True, [(10, True), (20, True), (40, True), (60, False), (50, False), (45, True)])


def test_capacity_search_edges() -> None:
    assert capacity_search(lambda n: True, ladder=[10, 20], bisections=2) == Capacity(20, False, [(10, True), (20, True)])
    assert capacity_search(lambda n: n <= 3, ladder=[10, 20], bisections=3) == Capacity(
        3, True, [(10, False), (5, False), (2, True), (3, True)]
    )
    assert capacity_search(lambda n: False, ladder=[10], bisections=1).clients == 0


BUSY = "while True: pass"


def _spawn(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_cpu_accounting_counts_a_busy_descendant_and_not_an_idle_process() -> None:
    # the busy loop runs in a grandchild: the accounting must follow the tree, as it must for
    # uvicorn's workers and daphne's children
    busy = _spawn(f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BUSY!r}])")
    idle = _spawn("import time; time.sleep(60)")
    try:
        time.sleep(0.5)  # both started (interpreter start-up is CPU too)
        before_busy, before_idle = cpu_sample([busy.pid]), cpu_sample([idle.pid])
        time.sleep(1.0)
        spent_busy = cpu_spent(before_busy, cpu_sample([busy.pid]))
        spent_idle = cpu_spent(before_idle, cpu_sample([idle.pid]))
        assert len(before_busy) == 2  # the child and its busy grandchild
    finally:
        _kill(busy)
        _kill(idle)
    assert spent_busy >= 150, spent_busy  # a second of a spinning core, on a machine others share
    assert spent_idle <= 30, spent_idle


def test_listening_pid_finds_the_listener() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert listening_pid(s.getsockname()[1]) == os.getpid()
