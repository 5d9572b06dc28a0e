"""A connection's submitted drawings: stored at once, in the background, and acknowledged.

The drawing is the person's data, its prediction can follow (a worker fills it in): a slow database
never holds up the socket's predictions, and a socket closed meanwhile does not cancel the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from contract.jobs import Strokes
from recognizer.protocol import ProtocolError, ServerMessage, SubmitMsg, stored_message

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreRequest:
    """A submitted drawing, to be kept at once (its prediction is filled in by a worker later)."""

    drawing: str
    strokes: Strokes
    label: int | None


Store = Callable[[StoreRequest], Awaitable[int]]  # -> the stored row's id
AdmitSubmit = Callable[[], Awaitable[int | None]]  # -> None, or seconds until this address may store again
Send = Callable[[ServerMessage], Awaitable[None]]


class Submits:
    """Stores each submit in a task of its own (never cancelled) and tells the page how it went,
    unless the socket has closed meanwhile (`closed`)."""

    def __init__(
        self, store: Store, send: Send, closed: Callable[[], bool], *, timeout_s: float, admit: AdmitSubmit | None = None
    ) -> None:
        self._store, self._send, self._closed = store, send, closed
        self._timeout_s, self._admit = timeout_s, admit
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def busy(self) -> bool:
        """A submit is still being stored."""
        return bool(self._tasks)

    def start(self, msg: SubmitMsg, strokes: Strokes) -> None:
        task = asyncio.ensure_future(self._keep(msg, strokes))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _keep(self, msg: SubmitMsg, strokes: Strokes) -> None:
        """Store first; a database that does not answer in time is `store_failed`; a resubmit finds the same row."""
        refused = await self._admit() if self._admit is not None else None
        if refused is not None:
            await self._tell(
                ProtocolError(
                    "rate_limited",
                    f"too many drawings stored from this address; submit again in {refused} s",
                    msg.seq,
                    retry_after=refused,
                ).as_message()
            )
            return
        try:
            row_id = await asyncio.wait_for(self._store(StoreRequest(msg.drawing, strokes, msg.label)), self._timeout_s)
        except Exception as exc:
            log.warning("storing drawing %s failed: %r", msg.drawing, exc)
            await self._tell(ProtocolError("store_failed", "the drawing could not be stored; submit again", msg.seq).as_message())
            return
        await self._tell(stored_message(msg.drawing, row_id, msg.seq))

    async def _tell(self, message: ServerMessage) -> None:
        if not self._closed():
            await self._send(message)
