"""The current model switched in the admin's database while 10 clients stream drawings: no prediction
fails or is lost, and every prediction from 5 s after the switch on names the new model (the workers
watch the choice every second and swap models between batches, without a restart)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from recognizer.models import ServingModel
from review.services import serving_model_set
from tests.support.digit_paths import digit_strokes
from tests.support.wsclient import ProtocolClient

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CLIENTS = 10
BEFORE_S = 4.0  # streaming on the old model before the switch
AFTER_S = 9.0  # ...and after it
SWITCHED_WITHIN_S = 5.0  # the promise
PAUSE_S = 0.05  # the page sends a message about every 50 ms
POINTS = 8  # points a message, as the page sends them


@dataclass
class Log:
    """What one client saw: every message with the monotonic time it was read, and the drawings
    whose final prediction never came."""

    seen: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    drawings: int = 0
    answered: int = 0  # the newest seq a prediction answered
    failure: BaseException | None = None


def _read_until(client: ProtocolClient, log: Log, deadline: float, final_seq: int | None = None) -> bool:
    """Read messages until `deadline`; with `final_seq`, stop once it is answered (True if it is)."""
    while (left := deadline - time.monotonic()) > 0:
        try:
            msg = client.recv(timeout=left)
        except TimeoutError:
            break
        log.seen.append((time.monotonic(), msg))
        if msg["type"] == "prediction":
            log.answered = max(log.answered, msg["seq"])
        if final_seq is not None and log.answered >= final_seq:
            return True
    return False


def _stream(url: str, index: int, stop: threading.Event, log: Log) -> None:
    try:
        client = ProtocolClient(url)
        try:
            while not stop.is_set():
                digit, drawing = (index + log.drawings) % 10, f"switch-{index}-{log.drawings}"
                last = 0
                for k, stroke in enumerate(digit_strokes(digit)):
                    points = [list(p) for p in stroke]
                    for i in range(0, len(points), POINTS):
                        last = client.send(
                            type="stroke",
                            drawing=drawing,
                            stroke=k,
                            points=points[i : i + POINTS],
                            final=i + POINTS >= len(points),
                            canvas=[280, 280],
                            brush=16,
                        )
                        _read_until(client, log, time.monotonic() + PAUSE_S)
                if log.answered < last and not _read_until(client, log, time.monotonic() + 15, final_seq=last):
                    log.lost.append(drawing)
                log.drawings += 1
        finally:
            client.close()
    except BaseException as exc:  # reported by the test, not lost in a thread
        log.failure = exc


def _serving(url: str) -> dict[str, Any]:
    return requests.get(f"{url}/healthz", timeout=5).json()


def _wait_serving(url: str, model: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while set((health := _serving(url)).get("workers_per_model", {})) != {model} or health["model"] != model:
        assert time.monotonic() < deadline, f"the workers never all served {model}: {health}"
        time.sleep(0.1)


def test_switching_the_model_under_load_fails_nothing_and_serves_the_new_model_within_5_s(stack) -> None:
    start = _serving(stack.url)["model"]
    target = "cnn-v5" if start == "cnn-v6" else "cnn-v6"
    _wait_serving(stack.url, start, timeout=10)
    stop = threading.Event()
    logs = [Log() for _ in range(CLIENTS)]
    threads = [threading.Thread(target=_stream, args=(stack.url, i, stop, logs[i])) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        time.sleep(BEFORE_S)
        switched_at = time.monotonic()
        serving_model_set(name=target)
        time.sleep(AFTER_S)
        stop.set()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "a client never finished"
        health = _serving(stack.url)
    finally:
        stop.set()
        ServingModel.objects.all().delete()  # back to current.json's model, as the other tests expect
        _wait_serving(stack.url, start, timeout=15)

    for log in logs:
        assert log.failure is None, repr(log.failure)
    predictions = [(t - switched_at, m) for log in logs for t, m in log.seen if m["type"] == "prediction"]
    errors = [m for log in logs for _, m in log.seen if m["type"] == "error"]
    lost = [d for log in logs for d in log.lost]
    old = [t for t, m in predictions if m["model"] == start]
    new = [t for t, m in predictions if m["model"] == target]
    late_old = [(round(t, 2), m["seq"]) for t, m in predictions if t >= SWITCHED_WITHIN_S and m["model"] != target]
    drawings = sum(log.drawings for log in logs)
    print(  # noqa: T201 - the measurement, shown by pytest -s
        f"\n{CLIENTS} clients, {drawings} drawings, {len(predictions)} predictions: {start} -> {target}; "
        f"first {target} prediction {min(new, default=float('nan')):.2f} s after the switch, "
        f"last {start} one {max(old, default=float('nan')):.2f} s after; {len(errors)} errors, {len(lost)} lost"
    )

    assert errors == [] and lost == []
    assert {m["model"] for _, m in predictions} == {start, target}
    assert old and min(old) < 0, "nothing was predicted by the old model before the switch"
    assert late_old == [], f"predictions {SWITCHED_WITHIN_S} s after the switch still by another model: {late_old[:10]}"
    for log in logs:  # every client was served by the new model, well after the switch
        assert any(t - switched_at >= SWITCHED_WITHIN_S and m["type"] == "prediction" for t, m in log.seen)
    assert health["model"] == target and set(health["workers_per_model"]) == {target}, health
