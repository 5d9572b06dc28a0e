"""WebSocket consumer for protocol v1 (docs/protocol.md).

Thin: Channels in, Channels out. The conversation itself (checking, coalescing, retries, ordering)
is `recognizer.session.RecognitionSession`; jobs leave in batches through the process's
`JobClient`, whose reply channel brings the answers back to this socket.
"""

from __future__ import annotations

import logging
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from contract.errors import error_message
from edge import draining
from edge.penalties import penalties
from edge.throttle import address_limits
from recognizer import metrics
from recognizer.job_client import job_client, new_job_id, publish_fill
from recognizer.protocol import ServerMessage, encode
from recognizer.ratelimit import AddressSockets, AllOf, TokenBucket
from recognizer.services import drawing_store
from recognizer.session import RecognitionSession, StoreRequest

log = logging.getLogger(__name__)

# This web process is shutting down: reconnect (docs/protocol.md). RFC 6455's 1001 "going away" would
# say so too, but daphne (autobahn) lets an application close only with 1000 or 3000-4999.
CLOSE_RESTARTING = 4001
CLOSE_LIMITED = 4029  # refused by a per-address limit (like HTTP 429); an `error` says which
FLOOD_PENALTY_S = 10.0  # a socket closed for sending on while refused: its address's new ones are refused this long

_addresses: AddressSockets | None = None


def address_sockets() -> AddressSockets:
    """This process's open sockets per client address."""
    global _addresses
    if _addresses is None:
        _addresses = AddressSockets(
            settings.WS_SOCKETS_PER_ADDRESS,
            settings.WS_ADDRESS_RATE_PER_SECOND,
            settings.WS_ADDRESS_RATE_BURST,
            settings.WS_ADDRESS_BYTES_PER_SECOND,
            settings.WS_ADDRESS_BYTES_BURST,
            settings.WS_ADDRESS_PREDICTIONS_PER_SECOND,
            settings.WS_ADDRESS_PREDICTIONS_BURST,
        )
    return _addresses


async def store_submitted(req: StoreRequest) -> int:
    row, _ = await database_sync_to_async(drawing_store)(
        client_id=req.drawing,
        strokes=req.strokes.strokes,
        canvas=req.strokes.canvas,
        brush=req.strokes.brush,
        label=req.label,
        enqueue=publish_fill,
    )
    return int(row.pk)


class RecognizeConsumer(AsyncWebsocketConsumer):
    # No channel (and no Redis subscription) per socket: answers reach it through the process's
    # reply channel (recognizer.replies), so a closed socket leaves nothing subscribed.
    channel_layer_alias = "no-channel-per-socket"

    async def connect(self) -> None:
        await self.accept()  # accepted first, so that a refusal can say why (browsers hide a 403)
        if draining.draining():  # this process is shutting down: come back to another one
            await self.close(code=CLOSE_RESTARTING)
            return
        address = (self.scope.get("client") or ["unknown"])[0]
        opens = address_limits().socket_opens
        retry_after = await opens.refused(address) if opens is not None else None
        if retry_after is not None:
            penalties.refuse(address, retry_after)  # back before then: refused at accept (edge.serve)
            await self._refuse("rate_limited", f"too many new connections from this address; retry in {retry_after} s")
            return
        shared = address_sockets().open(address)
        if shared is None:
            await self._refuse("too_many_sockets", "too many open connections from this address; close some")
            return
        self.address = address
        metrics.SOCKETS.inc()
        self.jobs = await job_client()
        book = address_sockets()
        frame_bytes, work = book.frame_bytes(address), book.work(address)
        self.session = RecognitionSession(
            client=new_job_id(),
            sink=self.jobs,
            send=self.send_json,
            store=store_submitted,
            new_id=new_job_id,
            timeout_s=settings.WS_PREDICTION_TIMEOUT_S,
            live_interval_s=settings.WS_LIVE_INTERVAL_MS / 1000,
            load_factor=settings.WS_LIVE_LOAD_FACTOR,
            heat_map_delay_s=settings.WS_HEAT_DELAY_MS / 1000,
            # this socket's budget, and its address's (shared by all the address's sockets here)
            bucket=AllOf(TokenBucket(settings.WS_RATE_PER_SECOND, settings.WS_RATE_BURST), shared),
            # the work its messages ask for (recognizer.ratelimit), this socket's and its address's
            frame_bytes=AllOf(
                TokenBucket(settings.WS_BYTES_PER_SECOND, settings.WS_BYTES_BURST), *([frame_bytes] if frame_bytes else [])
            ),
            work=AllOf(TokenBucket(settings.WS_PREDICTIONS_PER_SECOND, settings.WS_PREDICTIONS_BURST), *([work] if work else [])),
            admit_submit=self._submit_refused,
            on_flood=self._close_flooding,
        )
        self.jobs.register(self.session.client, self.session.on_answer)
        draining.register(self)

    async def _submit_refused(self) -> int | None:
        """Stored drawings per address and window (THROTTLE_SUBMITS, in Redis): None, or its Retry-After."""
        submits = address_limits().submits
        return await submits.refused(self.address) if submits is not None else None

    async def _close_flooding(self) -> None:
        """Its frames were refused again and again, and it sent on: closed, and new connections from its
        address are refused at accept for a while (edge.penalties; its other open sockets go on)."""
        log.info("closing socket %s of %s: it sent on while refused", self.session.client, self.address)
        penalties.refuse(self.address, FLOOD_PENALTY_S)
        await self.close(code=CLOSE_LIMITED)

    async def _refuse(self, code: str, message: str) -> None:
        await self.send_json(error_message(code, message, seq=None))
        await self.close(code=CLOSE_LIMITED)

    async def disconnect(self, code: int) -> None:
        draining.unregister(self)
        if hasattr(self, "address"):
            address_sockets().close(self.address)
            metrics.SOCKETS.dec()
        if hasattr(self, "session"):
            self.jobs.unregister(self.session.client)
            self.session.close()

    async def drain(self, deadline: float) -> None:
        """Shutdown: let in-flight predictions and submits finish (until `deadline`), then close."""
        if not await self.session.settle(deadline):
            log.warning("closing socket %s with work still in flight", self.session.client)
        self.session.close()  # nothing more is sent on a socket being closed (a late heat map)
        await self.close(code=CLOSE_RESTARTING)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' own dispatch first closes stale database connections in the sync thread: a
        # thread hop per frame. This consumer touches the database only through
        # database_sync_to_async (drawing_store), which closes them around each call.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

    async def send_json(self, message: ServerMessage) -> None:
        await self.send(text_data=encode(message))
        if message["type"] == "prediction":  # asked to shown, as the page sees it
            metrics.observe_end_to_end("drawing", message["latency_ms"] / 1000)
        elif message["type"] == "error":
            metrics.observe_error(str(message["code"]))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.session.handle_frame(text_data, bytes_data)
