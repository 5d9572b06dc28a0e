"""WebSocket consumer for protocol v1 (docs/protocol.md).

Thin: it checks each frame into a typed message, applies it to the connection's drawing, and asks
the workers for a prediction. At most one prediction is in flight per connection; messages that
arrive meanwhile mark the drawing dirty and the newest state is predicted next, so a burst always
ends with a prediction for its last message and a flood cannot pile work up in Redis.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from recognizer.drawing import DrawingState
from recognizer.jobs import enqueue, new_job_id
from recognizer.protocol import ProtocolError, SubmitMsg, check_message
from recognizer.ratelimit import TokenBucket
from recognizer.services import drawing_store

log = logging.getLogger(__name__)


@dataclass
class Request:
    """A prediction the workers owe us."""

    seq: int
    drawing: str
    started: float  # perf_counter when the message it answers arrived
    submit: SubmitMsg | None = None
    snapshot: dict[str, Any] = field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None
    retries: int = 0


class RecognizeConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.state = DrawingState()
        self.last_seq: int | None = None
        self.shown_seq = -1  # newest seq already predicted to the client
        self.bucket = TokenBucket(settings.WS_RATE_PER_SECOND, settings.WS_RATE_BURST)
        self.requests: dict[str, Request] = {}
        self.live: str | None = None  # id of the in-flight live (non-submit) request
        self.dirty = False
        self.received_at = 0.0
        self.state_at = 0.0  # when the message behind the current state arrived
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for req in self.requests.values():
            if req.timer:
                req.timer.cancel()
        self.requests.clear()

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' own dispatch first closes stale database connections in the sync thread: a
        # thread hop per frame and per worker answer. This consumer touches the database only
        # through database_sync_to_async (drawing_store), which closes them around each call.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(message, separators=(",", ":")))

    # ---- client -> server
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        self.received_at = time.perf_counter()
        if not self.bucket.take():
            await self.send_json(ProtocolError("rate_limited", "too many messages; slow down").as_message())
            return
        try:
            msg = check_message(text_data, bytes_data, last_seq=self.last_seq)
            if isinstance(msg, SubmitMsg):
                self._check_submit(msg)
            else:
                self.state.apply(msg)
                self.state_at = self.received_at
        except ProtocolError as err:
            await self.send_json(err.as_message())
            return
        self.last_seq = msg.seq
        if isinstance(msg, SubmitMsg):
            await self._request(Request(msg.seq, msg.drawing, self.received_at, submit=msg))
        elif self.live is None:
            await self._request_live()
        else:
            self.dirty = True

    def _check_submit(self, msg: SubmitMsg) -> None:
        if msg.drawing != self.state.drawing or not any(self.state.strokes):
            raise ProtocolError("empty_drawing", f"drawing {msg.drawing} has no strokes to store")

    async def _request_live(self) -> None:
        self.dirty = False
        req = Request(self.state.seq, self.state.drawing, self.state_at)
        self.live = await self._request(req)

    async def _request(self, req: Request) -> str:
        req.snapshot = req.snapshot or self.state.snapshot()
        job_id = new_job_id()
        job = {
            "id": job_id,
            "reply": self.channel_name,
            "png": req.submit is not None,
            "seq": req.seq,
            # the heat map only when the pen is up, in a message after the prediction
            **({"saliency": "after"} if not req.snapshot["pen_down"] else {}),
            **req.snapshot,
        }
        self.requests[job_id] = req
        req.timer = asyncio.get_running_loop().call_later(
            settings.WS_PREDICTION_TIMEOUT_S, lambda: asyncio.ensure_future(self._expire(job_id))
        )
        try:
            await enqueue(job)
        except Exception:  # broker down: tell the client, keep the drawing
            log.exception("could not queue job")
            await self._finish(job_id)
            await self.send_json(ProtocolError("unavailable", "the recogniser is unavailable; retry later", req.seq).as_message())
        return job_id

    async def _expire(self, job_id: str) -> None:
        """No answer in time (a worker died or none runs): retry once, then tell the client."""
        req = self.requests.get(job_id)
        if req is None:
            return
        await self._finish(job_id)
        if req.retries < 1:
            req.retries += 1
            req.timer = None
            new_id = await self._request(req)
            if req.submit is None:
                self.live = new_id
            return
        await self.send_json(ProtocolError("unavailable", "no prediction in time; retry later", req.seq).as_message())

    async def _finish(self, job_id: str) -> Request | None:
        req = self.requests.pop(job_id, None)
        if req and req.timer:
            req.timer.cancel()
        if self.live == job_id:
            self.live = None
        return req

    # ---- workers -> server (channel layer type "prediction.result")
    async def prediction_result(self, event: dict[str, Any]) -> None:
        was_live = self.live == event["id"]
        req = await self._finish(event["id"])
        if req is None:
            return  # answer to a request we gave up on
        if "error" in event:
            await self.send_json(ProtocolError(event["error"]["code"], event["error"]["message"], req.seq).as_message())
        else:
            prediction = self._prediction(req, event)
            if req.drawing == self.state.drawing and req.seq > self.shown_seq:
                self.shown_seq = req.seq
                await self.send_json(prediction)
            if req.submit is not None:
                await self._store(req, prediction, event)
        if was_live and self.dirty:
            await self._request_live()

    async def prediction_saliency(self, event: dict[str, Any]) -> None:
        """The heat map for a prediction already sent; only the one on screen is worth sending."""
        if event["drawing"] == self.state.drawing and event["seq"] == self.shown_seq:
            await self.send_json({"type": "saliency", "drawing": event["drawing"], "seq": event["seq"],
                                  "saliency": event["saliency"]})

    def _prediction(self, req: Request, event: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "prediction",
            "drawing": req.drawing,
            "seq": req.seq,
            "digit": event["digit"],
            "confidence": event["confidence"],
            "probabilities": event["probabilities"],
            "model": event["model"],
            "uncertain": event.get("uncertain", False),
            "reason": event.get("reason"),
            "latency_ms": round((time.perf_counter() - req.started) * 1000, 2),
            "image": event["image"],
            "timings": {**event.get("timings", {}), "push": round(max(0.0, time.time() - event["sent_at"]) * 1000, 3)},
        }

    async def _store(self, req: Request, prediction: dict[str, Any], event: dict[str, Any]) -> None:
        assert req.submit is not None
        try:
            row = await database_sync_to_async(drawing_store)(
                client_id=req.drawing,
                strokes=req.snapshot["strokes"],
                canvas=req.snapshot["canvas"],
                brush=req.snapshot["brush"],
                image28=base64.b64decode(event["image"]) if event["image"] else bytes(784),
                png=base64.b64decode(event["png"]),
                prediction=prediction,
                label=req.submit.label,
            )
        except Exception:
            log.exception("storing drawing %s failed", req.drawing)
            await self.send_json(ProtocolError("store_failed", "the drawing could not be stored; submit again", req.seq).as_message())
            return
        await self.send_json({"type": "stored", "drawing": req.drawing, "id": row.pk, "seq": req.seq})
