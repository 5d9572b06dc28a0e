"""Scaling while running (scripts/autoscale.py): on a stack of its own with AUTOSCALE inference:1-2,
20 clients stream drawings; under their load a second inference worker is added and takes jobs;
when they slow down it is retired by draining (it stops consuming, finishes, exits 0) while they
keep drawing. Through both, no client is told an error, no drawing's final prediction is missing and
no seq is answered twice.

The web side's safety net (a job with no answer in WS_PREDICTION_TIMEOUT_S is asked again) is pushed
out of reach here (120 s), so that a job lost when a worker comes or goes shows as a missing answer.
Short thresholds and cool-downs (AUTOSCALE_* below) keep the test short; the defaults' figures come
from bench/autoscale.py.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from contract.heartbeats import heartbeat_key, worker_details
from scripts.stack import Stack
from tests.conftest import stack_of_its_own
from tests.support.digit_paths import digit_strokes
from tests.support.wsclient import ProtocolClient

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CLIENTS = 20
FAST_S, SLOW_S = 0.05, 0.5  # pause between a client's stroke messages: the page's pace, then a tenth of it
# 20 clients at the page's pace keep one inference worker about 45% busy on this machine (docs/benchmarks.md),
# less on a faster moment: adding at 25% makes the load unambiguous; two workers then stay (0.45 > 0.2) until
# the pace drops to a tenth.
SCALING = {
    "AUTOSCALE_UP_UTILISATION": "0.25",
    "AUTOSCALE_DOWN_UTILISATION": "0.2",
    "AUTOSCALE_UP_AFTER_S": "0.5",
    "AUTOSCALE_COOLDOWN_S": "1",
    "AUTOSCALE_IDLE_S": "2",
    "AUTOSCALE_WINDOW_S": "2",
    "AUTOSCALE_INTERVAL_S": "0.25",
    "WS_PREDICTION_TIMEOUT_S": "120",
}


class Streamer(threading.Thread):
    """One page drawing digits one after another, a stroke message every `pause` s; keeps every
    message it receives and the seq of each drawing's last stroke message."""

    def __init__(self, url: str, index: int) -> None:
        super().__init__(name=f"streamer-{index}", daemon=True)
        self.url, self.index = url, index
        self.pause = FAST_S
        self.stopping = threading.Event()
        self.received: list[dict[str, Any]] = []
        self.finals: list[int] = []  # the last seq of each drawing, each answered
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            client = ProtocolClient(self.url)
            try:
                n = 0
                while not self.stopping.is_set():
                    self.draw(client, f"c{self.index}d{n}", (self.index + n) % 10)
                    n += 1
            finally:
                client.close()
        except BaseException as exc:  # reported by the test
            self.failure = exc

    def draw(self, client: ProtocolClient, drawing: str, digit: int) -> None:
        last = 0
        for k, stroke in enumerate(digit_strokes(digit)):
            points = [list(p) for p in stroke]
            for i in range(0, len(points), 4):
                if self.stopping.is_set():
                    break  # the drawing ends here: its newest message is answered all the same
                last = client.send(
                    type="stroke",
                    drawing=drawing,
                    stroke=k,
                    points=points[i : i + 4],
                    final=i + 4 >= len(points),
                    canvas=[280, 280],
                    brush=16,
                )
                time.sleep(self.pause)
        if not last:
            return
        final, seen = client.prediction_for(last, timeout=60)
        self.received.extend(seen)
        assert final["seq"] == last, f"{drawing}: the newest answer is for {final['seq']}, not {last}"
        self.finals.append(last)
        client.send(type="clear", drawing=drawing)


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        time.sleep(0.2)
    return value


def test_a_worker_is_added_under_load_and_retired_when_idle_with_nothing_lost_or_doubled(stack: Stack, tmp_path: Path) -> None:
    env = {**stack.env, **SCALING}
    with stack_of_its_own("autoscale", env, tmp_path, workers={"preprocess": 1}, autoscale={"inference": (1, 2)}) as service:
        scaler = service.autoscaler
        assert scaler is not None
        inference = service.worker_names("inference")
        assert len(inference) == 1, inference
        first = inference[0]
        broker = redis.Redis.from_url(service.redis_url)
        beats = heartbeat_key(service.env["REDIS_PREFIX"])

        def busy(node: str) -> float:
            return next((d.busy_s or 0.0 for d in worker_details(broker, beats) if d.name == node), 0.0)

        streamers = [Streamer(service.url, i) for i in range(CLIENTS)]
        for s in streamers:
            s.start()
        try:
            # under load: a second worker, which takes jobs
            added = wait_until(lambda: [e for e in scaler.events if e.delta > 0], 60, "a worker added")
            second = added[0].worker
            assert [(e.queue, e.worker) for e in added] == [("inference", second)]
            assert second != first and service.worker_names("inference") == [first, second]
            [(_, new_proc)] = [(n, p) for n, p in service.procs if n == "worker-inference1"]
            wait_until(lambda: busy(second) > 0, 30, f"{second} taking jobs")

            # lighter load, the clients still drawing: the newest worker is drained away
            for s in streamers:
                s.pause = SLOW_S
            retired = wait_until(lambda: [e for e in scaler.events if e.delta < 0], 60, "a worker retired")
            assert [(e.queue, e.worker) for e in retired] == [("inference", second)]
            assert service.worker_names("inference") == [first]
            assert new_proc.wait(timeout=90) == 0, "not a warm shutdown"
            assert second not in {d.name for d in worker_details(broker, beats)}  # it said goodbye
            answered_before = sum(len(s.finals) for s in streamers)
            wait_until(
                lambda: sum(len(s.finals) for s in streamers) >= answered_before + CLIENTS,
                60,
                "drawings answered after the retirement",
            )
            events = list(scaler.events)
        finally:
            for s in streamers:
                s.stopping.set()
            for s in streamers:
                s.join(timeout=90)

        assert [s.failure for s in streamers if s.failure] == []
        errors = [m for s in streamers for m in s.received if m["type"] == "error"]
        assert errors == [], errors[:5]
        for s in streamers:
            predicted = Counter(m["seq"] for m in s.received if m["type"] == "prediction")
            assert [seq for seq, n in predicted.items() if n > 1] == [], f"client {s.index}: seqs answered twice"
            assert set(s.finals) <= set(predicted), f"client {s.index}: a drawing's final prediction missing"
        assert [e.delta for e in events] == [1, -1]  # no flapping: one worker added, one retired
