"""The baseline to beat: protocol v1 served by one ASGI process per core, no queue, no Django.

"The simplest alternative a user could build": each web process loads the current model and, for
every client message, preprocesses and predicts right there in its event loop, with the service's
own code (recognizer.protocol, recognizer.drawing, worker.pipeline, digits.inference.predictor). It answers
every message (no coalescing), sends predictions shaped exactly as the service does (docs/protocol.md)
and the saliency message of a pen-up prediction that stayed the newest state for WS_HEAT_DELAY_MS, as
the service does, checks the Origin header and
rate-limits like the service. What it does not do: `submit` is checked like the service checks it and
then refused with an `unavailable` error (nothing is stored: there is no database here); no retry
and no `unavailable` for a dead worker (there is none); `POST /api/predict` is not served.

    uvicorn bench.inprocess_server:app --workers 2 --no-access-log   # one process per core

`GET /healthz` answers `{"status": "ok", "model": ..., "pid": ...}` once the model is loaded.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from digits.inference.predictor import Predictor, load_predictor
from recognizer.drawing import DrawingState
from recognizer.protocol import ProtocolError, SubmitMsg, check_message
from recognizer.ratelimit import TokenBucket
from worker.pipeline import classify, empty_prediction, prepare_strokes
from worker.pipeline import heat_map_base64 as saliency_map

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = Path(os.environ.get("MODELS_DIR", ROOT / "models"))
ALLOWED_HOSTS = frozenset(os.environ.get("INPROCESS_ALLOWED_HOSTS", "127.0.0.1,localhost").split(","))
# The service's WS_RATE_PER_SECOND / WS_RATE_BURST (digitsite/settings/base.py), not imported: no Django.
RATE_PER_SECOND, RATE_BURST = 100.0, 200.0
HEAT_DELAY_S = float(os.environ.get("WS_HEAT_DELAY_MS", "150")) / 1000  # the service's default
WS_PATH = "/ws/recognize/"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_predictor: Predictor | None = None  # one per process, loaded at lifespan startup


def predictor_load() -> Predictor:
    global _predictor
    if _predictor is None:
        torch.set_num_threads(1)  # one process per core: intra-op threads would only fight
        _predictor = load_predictor(MODELS_DIR)
        image = prepare_strokes([[[60.0, 60.0], [200.0, 220.0]]], [280.0, 280.0], 16.0)
        assert image is not None
        classify(_predictor, image)  # warm up the first forward pass
    return _predictor


def origin_allowed(headers: list[tuple[bytes, bytes]]) -> bool:
    """Like Channels' AllowedHostsOriginValidator: an Origin header whose host is allowed; none is refused."""
    for name, value in headers:
        if name == b"origin":
            try:
                return urlparse(value.decode("latin1")).hostname in ALLOWED_HOSTS
            except ValueError:
                return False
    return False


def prediction_answer(predictor: Predictor, state: DrawingState, received: float) -> tuple[dict[str, Any], bytes | None]:
    """The prediction for the drawing's current state, as the consumer sends it, and the model's input."""
    start = time.perf_counter()
    image = prepare_strokes(state.strokes, state.canvas, state.brush)
    prepared = time.perf_counter()
    result = empty_prediction(predictor.name) if image is None else classify(predictor, image)
    # the service's phases (docs/protocol.md); here there is no queue, no batch of others, no hop back
    timings = {
        "queue_inference": _ms(received, start),
        "preprocess": _ms(start, prepared),
        "inference": _ms(prepared, time.perf_counter()),
        "batch": 1.0,
        "push": 0.0,
    }
    answer = {
        "type": "prediction",
        "drawing": state.drawing,
        "seq": state.seq,
        **result,
        "latency_ms": round((time.perf_counter() - received) * 1000, 2),
        "image": base64.b64encode(image).decode() if image is not None else None,
        "timings": timings,
    }
    return answer, image


def _ms(a: float, b: float) -> float:
    return round((b - a) * 1000, 3)


async def _send_json(send: Send, message: dict[str, Any]) -> None:
    await send({"type": "websocket.send", "text": json.dumps(message, separators=(",", ":"))})


async def recognize_socket(scope: Scope, receive: Receive, send: Send) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    if scope["path"] != WS_PATH or not origin_allowed(scope.get("headers", [])):
        await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
        return
    predictor = predictor_load()
    await send({"type": "websocket.accept"})
    state, last_seq = DrawingState(), None
    bucket = TokenBucket(RATE_PER_SECOND, RATE_BURST)
    loop = asyncio.get_running_loop()
    heat_timer: asyncio.TimerHandle | None = None
    tasks: set[asyncio.Task[None]] = set()

    async def send_heat(drawing: str, seq: int, image: bytes, digit: int) -> None:
        if state.drawing == drawing and state.seq == seq:  # still the newest state: worth explaining
            heat = saliency_map(predictor, image, digit)
            await _send_json(send, {"type": "saliency", "drawing": drawing, "seq": seq, "saliency": heat})

    def heat_due(*args: Any) -> None:
        task = loop.create_task(send_heat(*args))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    while True:
        event = await receive()
        if event["type"] == "websocket.disconnect":
            if heat_timer is not None:
                heat_timer.cancel()
            for task in tasks:  # nothing is sent on a closed socket
                task.cancel()
            return
        received = time.perf_counter()
        if not bucket.take():
            await _send_json(send, ProtocolError("rate_limited", "too many messages; slow down").as_message())
            continue
        try:
            msg = check_message(event.get("text"), event.get("bytes"), last_seq=last_seq)
            if isinstance(msg, SubmitMsg):
                if msg.drawing != state.drawing or not any(state.strokes):
                    raise ProtocolError("empty_drawing", f"drawing {msg.drawing} has no strokes to store")
                last_seq = msg.seq
                raise ProtocolError("unavailable", "the in-process benchmark server stores nothing", msg.seq)
            state.apply(msg)
        except ProtocolError as err:
            await _send_json(send, err.as_message())
            continue
        last_seq = msg.seq
        # Blocking work in the event loop, on purpose: one process per core, one thread each.
        answer, image = prediction_answer(predictor, state, received)
        await _send_json(send, answer)
        if image is not None and not state.open_stroke and answer["digit"] is not None:
            # pen up: the heat map once the state stayed the newest for a moment, as in the service
            if heat_timer is not None:
                heat_timer.cancel()
            heat_timer = loop.call_later(HEAT_DELAY_S, heat_due, state.drawing, state.seq, image, answer["digit"])


async def http(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["path"] == "/healthz" and _predictor is not None:
        status, body = 200, {"status": "ok", "model": _predictor.name, "pid": os.getpid()}
    elif scope["path"] == "/healthz":
        status, body = 503, {"status": "down", "model": None, "pid": os.getpid()}
    else:
        status, body = 404, {"type": "error", "code": "not_found", "message": "only /healthz and /ws/recognize/"}
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    while True:
        event = await receive()
        if event["type"] == "lifespan.startup":
            try:
                predictor_load()
            except Exception as exc:  # a missing or corrupt model: uvicorn reports it and exits
                await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif event["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    handler = {"websocket": recognize_socket, "http": http, "lifespan": lifespan}[scope["type"]]
    await handler(scope, receive, send)
