"""The consumer through Channels' WebsocketCommunicator, with the in-memory layer and an in-process
"worker" that runs the real pipeline on each published batch and answers through the layer."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer
from channels.testing import WebsocketCommunicator

from contract.jobs import Answers, Batch
from contract.tasks import HEAT_MAP_TASK
from digits.inference.predictor import load_predictor
from recognizer.consumers import RecognizeConsumer
from recognizer.job_client import drop_job_client, job_client
from recognizer.models import Drawing
from recognizer.replies import ReplyHub
from tests.support.digit_paths import digit_strokes
from worker import pipeline

ROOT = Path(__file__).resolve().parents[2]
# Channels consumers close stale database connections on every message: an earlier test's connection
# in the executor thread is touched then.
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def limits_in_memory(monkeypatch):
    """Per-address limits counted in memory (the service counts them in Redis), off unless a test sets them."""
    from limits.aio.storage import MemoryStorage

    from edge import throttle
    from recognizer import consumers

    monkeypatch.setattr(throttle, "_limits", throttle.AddressLimits(MemoryStorage(), "off", "off", "off"))
    monkeypatch.setattr(consumers, "_addresses", None)


class InProcessWorker:
    """Publishes land here: the batch is answered by the real pipeline, one layer message per batch."""

    def __init__(self, layer: InMemoryChannelLayer, loop: asyncio.AbstractEventLoop, fail: bool = False) -> None:
        self.layer, self.loop, self.fail = layer, loop, fail
        self.model = load_predictor(ROOT / "models")
        self.batches: list[int] = []
        self.gate = threading.Event()  # cleared: answers wait for it
        self.gate.set()

    def __call__(self, batch: Batch) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        jobs = batch.jobs
        if batch.task == HEAT_MAP_TASK:  # heat maps of predictions on screen: not a batch the window counts
            self._send(jobs[0].reply, Answers(pipeline.heat_map_answers(self.model, jobs)))
            return
        self.gate.wait(10)
        self.batches.append(len(jobs))
        self._send(jobs[0].reply, Answers(pipeline.predict_jobs(self.model, jobs, model_name=self.model.name), batch.id))

    def _send(self, reply: str, answers: Answers) -> None:
        if self.loop.is_closed():  # a heat map computed after the test ended
            return
        asyncio.run_coroutine_threadsafe(self.layer.send(reply, answers.to_wire(time.time())), self.loop).result()


async def connect(fail: bool = False) -> tuple[WebsocketCommunicator, InProcessWorker]:
    loop = asyncio.get_running_loop()
    layer = InMemoryChannelLayer()
    worker = InProcessWorker(layer, loop, fail)
    await job_client(publish=worker, make_hub=lambda: ReplyHub(layer))
    comm = WebsocketCommunicator(RecognizeConsumer.as_asgi(), "/ws/recognize/")
    connected, _ = await comm.connect()
    assert connected
    return comm, worker


async def close(comm: WebsocketCommunicator) -> None:
    await comm.disconnect()
    client = drop_job_client(asyncio.get_running_loop())
    if client is not None:
        await client.hub.stop()


async def send_strokes(comm: WebsocketCommunicator, digit: int, drawing: str, seq: int = 0) -> int:
    for k, stroke in enumerate(digit_strokes(digit)):
        points = [list(p) for p in stroke]
        for i in range(0, len(points), 8):
            seq += 1
            await comm.send_to(
                text_data=json.dumps(
                    {
                        "type": "stroke",
                        "seq": seq,
                        "drawing": drawing,
                        "stroke": k,
                        "points": points[i : i + 8],
                        "final": i + 8 >= len(points),
                        "canvas": [280, 280],
                        "brush": 16,
                    }
                )
            )
    return seq


async def until(comm: WebsocketCommunicator, done, timeout: float = 10) -> list[dict[str, Any]]:
    seen = []
    while True:
        seen.append(json.loads(await comm.receive_from(timeout=timeout)))
        if done(seen[-1]):
            return seen


def test_a_streamed_digit_is_read_with_coalesced_in_order_predictions() -> None:
    async def go() -> None:
        comm, _ = await connect()
        try:
            last = await send_strokes(comm, 7, "seven")
            seen = await until(comm, lambda m: m["type"] == "prediction" and m["seq"] == last)
            predictions = [m for m in seen if m["type"] == "prediction"]
            assert predictions[-1]["digit"] == 7 and predictions[-1]["model"]
            assert [m["seq"] for m in predictions] == sorted({m["seq"] for m in predictions})
            assert len(predictions) < last, "every message was predicted: nothing was coalesced"
            heat = await until(comm, lambda m: m["type"] == "saliency")
            assert heat[-1]["seq"] == last
        finally:
            await close(comm)

    asyncio.run(go())


def test_a_broker_that_refuses_the_job_is_answered_unavailable_and_the_socket_stays_open() -> None:
    async def go() -> None:
        comm, worker = await connect(fail=True)
        try:
            await comm.send_to(
                text_data=json.dumps(
                    {
                        "type": "stroke",
                        "seq": 1,
                        "drawing": "d",
                        "stroke": 0,
                        "points": [[1, 1], [9, 9]],
                        "final": True,
                        "canvas": [280, 280],
                        "brush": 16,
                    }
                )
            )
            err = await until(comm, lambda m: m["type"] == "error")
            assert err[-1]["code"] == "unavailable" and err[-1]["seq"] == 1
            worker.fail = False
            await comm.send_to(text_data=json.dumps({"type": "undo", "seq": 2, "drawing": "d"}))
            pred = await until(comm, lambda m: m["type"] == "prediction")
            assert pred[-1]["seq"] == 2 and pred[-1]["digit"] is None
        finally:
            await close(comm)

    asyncio.run(go())


@pytest.mark.django_db(transaction=True)
def test_submit_stores_the_drawing_at_once_and_queues_its_prediction(monkeypatch) -> None:
    queued: list[list[int]] = []
    monkeypatch.setattr("recognizer.consumers.publish_fill", queued.append)

    async def go() -> int:
        comm, _ = await connect()
        try:
            last = await send_strokes(comm, 3, "keep")
            await until(comm, lambda m: m["type"] == "prediction" and m["seq"] == last)
            for seq in (last + 1, last + 2):  # a resubmit (the page timed out) is the same row
                await comm.send_to(text_data=json.dumps({"type": "submit", "seq": seq, "drawing": "keep", "label": 3}))
            first = (await until(comm, lambda m: m["type"] in ("stored", "error")))[-1]
            second = (await until(comm, lambda m: m["type"] in ("stored", "error")))[-1]
            assert first["type"] == second["type"] == "stored" and first["id"] == second["id"]
            return first["id"]
        finally:
            await close(comm)

    pk = asyncio.run(go())
    row = Drawing.objects.get()
    assert (row.pk, row.client_id, row.label, row.predicted_at) == (pk, "keep", 3, None)
    assert queued == [[pk]], "the prediction was not queued once after the commit"


def test_a_drain_answers_what_is_in_flight_then_closes_with_the_restart_code(monkeypatch) -> None:
    from edge import draining
    from recognizer.consumers import CLOSE_RESTARTING

    monkeypatch.setattr(draining, "_draining", False)

    async def go() -> None:
        comm, worker = await connect()
        try:
            worker.gate.clear()  # the workers are slow: predictions are owed when the drain starts
            seq = await send_strokes(comm, 2, "two")
            await asyncio.sleep(0.3)  # the consumer has taken every frame
            assert worker.batches == [], "answered before the gate opened"
            drained = asyncio.ensure_future(draining.drain(5.0))
            assert await comm.receive_nothing(0.3), "closed with a prediction still owed"
            worker.gate.set()
            seen = await until(comm, lambda m: m["type"] == "prediction" and m["seq"] == seq)
            assert seen[-1]["digit"] == 2
            closing = await comm.receive_output(timeout=5)
            while closing["type"] != "websocket.close":  # e.g. a heat map sent before the close
                closing = await comm.receive_output(timeout=5)
            assert closing["code"] == CLOSE_RESTARTING
            assert await drained == 1
            assert draining.draining()
            late = WebsocketCommunicator(RecognizeConsumer.as_asgi(), "/ws/recognize/")
            connected, _ = await late.connect()  # accepted, then sent on at once
            assert connected
            assert (await late.receive_output(timeout=5)) == {"type": "websocket.close", "code": CLOSE_RESTARTING}
        finally:
            await close(comm)

    asyncio.run(go())


def test_health_says_draining_while_the_process_shuts_down(client, monkeypatch) -> None:
    from edge import draining

    monkeypatch.setattr(draining, "_draining", True)
    resp = client.get("/healthz")
    assert resp.status_code == 503 and resp.json()["status"] == "draining"
    assert client.get("/livez").status_code == 200  # alive: it is finishing its work


def test_sockets_over_an_address_limit_are_told_why_and_closed(settings, monkeypatch) -> None:
    from limits.aio.storage import MemoryStorage

    from edge import throttle
    from edge.penalties import Penalties
    from recognizer import consumers
    from recognizer.consumers import CLOSE_LIMITED

    box = Penalties()
    monkeypatch.setattr(consumers, "penalties", box)

    settings.WS_SOCKETS_PER_ADDRESS = 2
    monkeypatch.setattr(throttle, "_limits", throttle.AddressLimits(MemoryStorage(), "off", "3/minute", "off"))

    async def refused(comm: WebsocketCommunicator) -> str:
        connected, _ = await comm.connect()
        assert connected  # accepted so that it can say why...
        error = json.loads(await comm.receive_from(timeout=5))
        assert (await comm.receive_output(timeout=5)) == {"type": "websocket.close", "code": CLOSE_LIMITED}
        return error["code"]

    async def go() -> None:
        first, _ = await connect()
        try:
            second = WebsocketCommunicator(RecognizeConsumer.as_asgi(), "/ws/recognize/")
            assert (await second.connect())[0]
            third = WebsocketCommunicator(RecognizeConsumer.as_asgi(), "/ws/recognize/")
            assert await refused(third) == "too_many_sockets"  # two open already
            await second.disconnect()
            fourth = WebsocketCommunicator(RecognizeConsumer.as_asgi(), "/ws/recognize/")
            assert await refused(fourth) == "rate_limited"  # a fourth opening within the minute
            # and the web server refuses the address's next connections at accept until its Retry-After
            assert box.remaining("unknown") > 1  # (the communicator's scope has no client address)
            seq = await send_strokes(first, 1, "one")  # the sockets already open go on
            await until(first, lambda m: m["type"] == "prediction" and m["seq"] == seq)
        finally:
            await close(first)

    asyncio.run(go())
