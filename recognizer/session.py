"""One connection's conversation (protocol v1), without Channels: the consumer's brain.

It checks each frame, applies it to the drawing, and asks the workers for predictions: at most one
live prediction in flight per connection; messages that arrive meanwhile mark the drawing dirty and
the newest state is predicted next, so a burst always ends with a prediction for its last message,
an older answer never overtakes a newer one, and a flood cannot pile work up in Redis. While the pen
is down, the live prediction is refreshed at most every `live_interval_s` (the page sends a partial
stroke every 50 ms), or every few round trips when the workers answer slowly; a pen-up state (a
final stroke, undo, clear) is never held back, not even behind a pen-down refresh still in flight:
it is asked for at once, beside it (so two requests at most, and the pen-down answer, if it comes
later, is dropped as older). The pen-up state is the one the person looks at; waiting for a refresh
it replaces would add a whole round trip to it.

The heat map of a pen-up prediction is asked for only once that prediction has stayed on screen
for `heat_delay_s` with nothing newer drawn: a backward pass costs three forward ones, and the
heat map of a state the next stroke replaces within a blink would never be looked at.

Every request ends in an answer: a failed publish is an `unavailable` error for the newest state;
an answer that does not come in time is asked again once (for the newest state), then it is an
`unavailable` error. Nothing waits in silence.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from contract.jobs import Answer, Job, Strokes
from recognizer.drawing import DrawingState
from recognizer.protocol import (
    MAX_FRAME_BYTES,
    MAX_STORED_BYTES,
    MAX_STORED_POINTS,
    PREDICTION_POINTS_PER_UNIT,
    ProtocolError,
    SubmitMsg,
    check_message,
)
from recognizer.ratelimit import Budget, Unlimited

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class StoreRequest:
    """A submitted drawing, to be kept at once (its prediction is filled in by a worker later)."""

    drawing: str
    strokes: Strokes
    label: int | None


Store = Callable[[StoreRequest], Awaitable[int]]  # -> the stored row's id
AdmitSubmit = Callable[[], Awaitable[int | None]]  # -> None, or seconds until this address may store again
# A socket that goes on sending frames over its bytes budget or over the frame limit while refused
# (more than MAX_REFUSALS such frames, or more than MAX_REFUSED_BYTES of them, within REFUSALS_WINDOW_S)
# is closed: each still costs its reading (~1.5 ms for 150 KB), and a page, refused, backs off (its live
# updates are ~300 bytes). Frames over the message count only are refused, the socket stays open.
MAX_REFUSALS = 20
MAX_REFUSED_BYTES = 512 * 1024
REFUSALS_WINDOW_S = 2.0


class JobSink(Protocol):
    @property
    def reply(self) -> str: ...

    def submit(self, job: Job, on_failed: Callable[[BaseException], Awaitable[None]]) -> None: ...


@dataclass
class Pending:
    """A prediction the workers owe this connection."""

    seq: int
    drawing: str
    started: float  # perf_counter when the message it answers arrived
    strokes: Strokes
    pen_down: bool
    attempts: int = 1
    timer: asyncio.TimerHandle | None = None
    version: int = -1  # DrawingState.version of `strokes`


class RecognitionSession:
    def __init__(
        self,
        *,
        client: str,
        sink: JobSink,
        send: Send,
        store: Store,
        new_id: Callable[[], str],
        timeout_s: float,
        bucket: Budget,
        max_attempts: int = 2,
        store_timeout_s: float = 4.0,
        live_interval_s: float = 0.0,
        load_factor: float = 16.0,
        heat_delay_s: float = 0.0,
        frame_bytes: Budget | None = None,
        work: Budget | None = None,
        admit_submit: AdmitSubmit | None = None,
        on_flood: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self._sink, self._send, self._store, self._new_id = sink, send, store, new_id
        self._timeout_s, self._bucket, self._max_attempts = timeout_s, bucket, max_attempts
        # what the socket's messages ask for: their bytes (a frame over budget is refused before it is
        # parsed), and predictions (charged as they are asked for, even into debt: the live prediction
        # then waits until the debt is paid, coalescing what comes meanwhile; nothing is refused)
        self._frame_bytes: Budget = frame_bytes if frame_bytes is not None else Unlimited()
        self._work: Budget = work if work is not None else Unlimited()
        self._admit_submit = admit_submit
        self._on_flood = on_flood  # closes the socket
        self._refusals, self._refused_bytes, self._refusals_since = 0, 0, 0.0
        self._store_timeout_s = store_timeout_s
        self._live_interval_s = live_interval_s
        self._heat_delay_s = heat_delay_s
        self._heat_timer: asyncio.TimerHandle | None = None  # asks for the heat map on screen
        self._load_factor = load_factor  # a pen-down refresh waits at least this many (smoothed) round trips
        self._round_trip_s = 0.0  # smoothed time from a live request to its answer
        self._live_at = -1e9  # perf_counter when the last live request was made...
        self._live_drawing = ""  # ...and for which drawing
        self._throttle: asyncio.TimerHandle | None = None
        self.state = DrawingState()
        self.last_seq: int | None = None
        self.shown_seq = -1  # newest seq already predicted to the client
        self._shown: tuple[str, int, dict[str, Any]] | None = None  # that prediction: (drawing, version, message)
        self.pending: dict[str, Pending] = {}  # job id -> what it answers
        self.live: str | None = None  # job id of the in-flight live (non-submit) request
        self.dirty = False  # the drawing changed since the live request was made
        self._state_at = 0.0  # when the message behind the current state arrived
        self._heat_owed: OrderedDict[str, tuple[str, int]] = OrderedDict()  # job id -> (drawing, seq)
        self._tasks: set[asyncio.Task[None]] = set()  # retries: cancelled when the socket closes
        self._stores: set[asyncio.Task[None]] = set()  # submits being stored: never cancelled
        self.closed = False

    # ---- client -> server
    async def handle_frame(self, text: str | None, data: bytes | None) -> None:
        received = time.perf_counter()
        if self.closed:
            return
        size = len(text) if text is not None else len(data or b"")
        if not self._bucket.take():  # (small frames, cheap to refuse: the socket stays open)
            await self._send(ProtocolError("rate_limited", "too many messages; slow down").as_message())
            return
        if size > MAX_FRAME_BYTES:  # refused unread (too_large), and not charged: counted as a refusal
            await self._refuse(ProtocolError("too_large", f"message over {MAX_FRAME_BYTES // 1024} KB"), received, 0)
            return
        # charged before parsing: a 10,000-point stroke is ~150 KB of JSON to parse and check
        if not self._frame_bytes.take(size):
            await self._refuse(ProtocolError("rate_limited", "too much drawing data; slow down"), received, size)
            return
        try:
            msg = check_message(text, data, last_seq=self.last_seq)
            if isinstance(msg, SubmitMsg):
                if msg.drawing != self.state.drawing or not any(self.state.strokes):
                    raise ProtocolError("empty_drawing", f"drawing {msg.drawing} has no strokes to store")
                self._check_storable(msg.seq)
            else:
                self.state.apply(msg)
                self._state_at = received
        except ProtocolError as err:
            await self._send(err.as_message())
            return
        self.last_seq = msg.seq
        if isinstance(msg, SubmitMsg):
            # stored in the background: a slow database never holds up this socket's predictions,
            # and a socket closed meanwhile does not cancel it (the drawing is the person's data)
            task = asyncio.ensure_future(self._keep(msg, self._snapshot(received).strokes))
            self._stores.add(task)
            task.add_done_callback(self._stores.discard)
        elif self._unchanged():
            await self._send_again(msg.seq, received)
        elif self.live is None or self._pen_up_overtakes():
            self._next_live()
        else:
            self.dirty = True

    async def _refuse(self, error: ProtocolError, now: float, size: int) -> None:
        """A frame refused unread (over a budget, or too large); a socket that sends on regardless
        (more than MAX_REFUSALS of them, or MAX_REFUSED_BYTES over its budget, within the window) is closed."""
        if now - self._refusals_since > REFUSALS_WINDOW_S:
            self._refusals, self._refused_bytes, self._refusals_since = 0, 0, now
        self._refusals += 1
        self._refused_bytes += size
        if (self._refusals > MAX_REFUSALS or self._refused_bytes > MAX_REFUSED_BYTES) and self._on_flood is not None:
            error.message += ": sent on while refused, closing"
            await self._send(error.as_message())
            self.closed = True  # nothing more is read, asked for or sent
            await self._on_flood()
            return
        await self._send(error.as_message())

    def _unchanged(self) -> bool:
        """The drawing is the one on screen (an undo or clear of an empty drawing), nothing is owed."""
        shown = self._shown
        return (
            shown is not None
            and not self.pending
            and not self.dirty
            and shown[0] == self.state.drawing
            and shown[1] == self.state.version
        )

    async def _send_again(self, seq: int, received: float) -> None:
        """The prediction on screen answers this message too: no worker is asked again."""
        assert self._shown is not None
        self.shown_seq = seq
        message = {**self._shown[2], "seq": seq, "latency_ms": round((time.perf_counter() - received) * 1000, 2)}
        await self._send(message)

    def _check_storable(self, seq: int) -> None:
        """A drawing kept (and perhaps trained on) is bounded in points and bytes: far beyond any digit."""
        points = self.state.points
        if points > MAX_STORED_POINTS:
            raise ProtocolError("too_large", f"a stored drawing has at most {MAX_STORED_POINTS} points (it has {points})", seq)
        if points * 52 > MAX_STORED_BYTES:  # a point is at most ~52 bytes of JSON: only then worth measuring
            size = len(json.dumps(self.state.strokes, separators=(",", ":")))
            if size > MAX_STORED_BYTES:
                raise ProtocolError("too_large", f"a stored drawing has at most {MAX_STORED_BYTES // 1024} KB of strokes", seq)

    def _pen_up_overtakes(self) -> bool:
        """The newest state is pen-up and the request in flight is a pen-down refresh: ask at once."""
        live = self.pending.get(self.live) if self.live is not None else None
        return live is not None and live.pen_down and not self.state.open_stroke

    def _next_live(self) -> None:
        """Ask for the newest state now, or (pen down, asked too recently) once the interval is up."""
        throttled = self.state.open_stroke and self.state.drawing == self._live_drawing  # a new drawing starts at once
        # Overloaded workers answer late; refreshing less often then is what lets them catch up, so
        # the interval stretches to a few round trips (pen-up states still go at once).
        interval = max(self._live_interval_s, self._load_factor * self._round_trip_s) if self._live_interval_s else 0.0
        wait = self._live_at + interval - time.perf_counter() if throttled else 0.0
        # the predictions asked for so far are not paid for yet (this socket's, or its address's): wait,
        # pen-up states too (a person's own socket never gets here; a flood's predictions are spaced out)
        wait = max(wait, self._work.wait_s())
        if wait <= 0:
            self._request_live()
            return
        self.dirty = True
        if self._throttle is None:
            self._throttle = asyncio.get_running_loop().call_later(wait, self._throttle_over)

    def _throttle_over(self) -> None:
        self._throttle = None
        if self.live is None and self.dirty and not self.closed:
            self._next_live()  # (the debt may have grown meanwhile: the address's other sockets)

    def _snapshot(self, started: float) -> Pending:
        s = self.state
        assert s.seq is not None
        strokes = Strokes([[list(p) for p in stroke] for stroke in s.strokes], s.canvas, s.brush)
        return Pending(s.seq, s.drawing, started, strokes, s.open_stroke, version=s.version)

    def _request_live(self) -> None:
        self.dirty = False
        if self._throttle is not None:
            self._throttle.cancel()
            self._throttle = None
        self._live_at, self._live_drawing = time.perf_counter(), self.state.drawing
        self.live = self._request(self._snapshot(self._state_at))

    def _request(self, p: Pending) -> str:
        job_id = self._new_id()
        # copied, sent and rendered: charged even into debt (the next live prediction waits until it is paid)
        self._work.charge(1 + sum(len(s) for s in p.strokes.strokes) / PREDICTION_POINTS_PER_UNIT)
        job = Job(id=job_id, client=self.client, reply=self._sink.reply, strokes=p.strokes)
        self.pending[job_id] = p
        p.timer = asyncio.get_running_loop().call_later(self._timeout_s, self._spawn, self._expire, job_id)

        async def failed(exc: BaseException) -> None:
            await self._enqueue_failed(job_id)

        self._sink.submit(job, failed)
        return job_id

    def _spawn(self, fn: Callable[[str], Awaitable[None]], job_id: str) -> None:
        task = asyncio.ensure_future(fn(job_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _forget(self, job_id: str) -> Pending | None:
        p = self.pending.pop(job_id, None)
        if p is not None and p.timer is not None:
            p.timer.cancel()
        if self.live == job_id:
            self.live = None
        return p

    async def _unavailable(self, p: Pending, message: str) -> None:
        """Tell the client that its newest state has no prediction coming."""
        self.dirty = False  # the error covers the newest state; the next message asks again
        seq = self.state.seq if self.state.seq is not None else p.seq
        await self._send(ProtocolError("unavailable", message, seq).as_message())

    async def _enqueue_failed(self, job_id: str) -> None:
        p = self._forget(job_id)
        # a newer request still out answers (or fails) for the newest state itself
        if p is not None and not self.closed and self.live is None:
            await self._unavailable(p, "the recogniser is unavailable; retry later")

    async def _expire(self, job_id: str) -> None:
        """No answer in time (its job lost with a worker, or none runs): ask once more, then say so."""
        p = self._forget(job_id)
        if p is None or self.closed or self.live is not None:
            return  # (a newer request is out: it answers, or fails, for the newest state)
        if p.attempts >= self._max_attempts:
            await self._unavailable(p, "no prediction in time; retry later")
            return
        log.info("no answer to job %s in %.1f s: asking again", job_id, self._timeout_s)
        self.dirty = False  # the newest state, not the one that went missing
        retry = self._snapshot(self._state_at)
        retry.attempts = p.attempts + 1
        self.live = self._request(retry)

    # ---- workers -> server
    async def on_answer(self, answer: Answer, sent_at: float) -> None:
        if self.closed:
            return
        if answer.is_saliency_only:
            await self._saliency(answer)
            return
        was_live = self.live == answer.id
        if was_live:
            self._round_trip_s += 0.3 * (time.perf_counter() - self._live_at - self._round_trip_s)
        p = self._forget(answer.id)
        if p is None:
            return  # an answer to a request already given up on or asked again
        if answer.error is not None:
            await self._send(ProtocolError(answer.error.code, answer.error.message, p.seq).as_message())
        elif answer.prediction is not None and p.drawing == self.state.drawing and p.seq > self.shown_seq:
            self.shown_seq = p.seq
            message = self._prediction_message(p, answer, sent_at)
            self._shown = (p.drawing, p.version, message)
            await self._send(message)
            digit = answer.prediction.digit
            if not p.pen_down and answer.image is not None and digit is not None:
                if self._heat_timer is not None:
                    self._heat_timer.cancel()
                self._heat_timer = asyncio.get_running_loop().call_later(
                    self._heat_delay_s, self._ask_heat, p.drawing, p.seq, answer.image, digit
                )
        if was_live and self.dirty:
            self._next_live()

    def _ask_heat(self, drawing: str, seq: int, image: bytes, digit: int) -> None:
        """The heat map of the prediction on screen, if it is still the newest state (nothing drawn since)."""
        self._heat_timer = None
        if self.closed or drawing != self.state.drawing or seq != self.shown_seq or seq != self.state.seq:
            return
        job_id = self._new_id()
        self._heat_owed[job_id] = (drawing, seq)
        while len(self._heat_owed) > 8:
            self._heat_owed.popitem(last=False)

        async def failed(exc: BaseException) -> None:  # a nicety: the prediction is on screen already
            self._heat_owed.pop(job_id, None)

        self._sink.submit(Job(id=job_id, client=self.client, reply=self._sink.reply, image=image, explain=digit), failed)

    async def _saliency(self, answer: Answer) -> None:
        """The heat map for a prediction already sent; only the one on screen is worth sending."""
        owed = self._heat_owed.pop(answer.id, None)
        if owed is None or answer.saliency is None:
            return
        drawing, seq = owed
        if drawing == self.state.drawing and seq == self.shown_seq:
            await self._send(
                {"type": "saliency", "drawing": drawing, "seq": seq, "saliency": base64.b64encode(answer.saliency).decode()}
            )

    @staticmethod
    def _prediction_message(p: Pending, answer: Answer, sent_at: float) -> dict[str, Any]:
        assert answer.prediction is not None
        push_ms = round(max(0.0, time.time() - sent_at) * 1000, 3)
        return {
            "type": "prediction",
            "drawing": p.drawing,
            "seq": p.seq,
            **answer.prediction.to_wire(),
            "latency_ms": round((time.perf_counter() - p.started) * 1000, 2),
            "image": base64.b64encode(answer.image).decode() if answer.image is not None else None,
            "timings": {**answer.timings, "push": push_ms},
        }

    async def _keep(self, msg: SubmitMsg, strokes: Strokes) -> None:
        """Store first: the drawing is the person's data, its prediction can follow (a worker fills it
        in). A database that does not answer in time is `store_failed`; a resubmit finds the same row."""
        refused = await self._admit_submit() if self._admit_submit is not None else None
        if refused is not None:
            if not self.closed:
                await self._send(
                    ProtocolError(
                        "rate_limited",
                        f"too many drawings stored from this address; submit again in {refused} s",
                        msg.seq,
                        retry_after=refused,
                    ).as_message()
                )
            return
        try:
            row_id = await asyncio.wait_for(self._store(StoreRequest(msg.drawing, strokes, msg.label)), self._store_timeout_s)
        except Exception as exc:
            log.warning("storing drawing %s failed: %r", msg.drawing, exc)
            if not self.closed:
                await self._send(
                    ProtocolError("store_failed", "the drawing could not be stored; submit again", msg.seq).as_message()
                )
            return
        if not self.closed:
            await self._send({"type": "stored", "drawing": msg.drawing, "id": row_id, "seq": msg.seq})

    @property
    def idle(self) -> bool:
        """No prediction owed, none waiting for its turn, no submit being stored."""
        return not self.pending and not self._stores and self._throttle is None and not self.dirty

    async def settle(self, deadline: float) -> bool:
        """Wait until idle or loop time `deadline` (a shutdown's drain); returns whether idle."""
        loop = asyncio.get_running_loop()
        while not self.idle and loop.time() < deadline:
            # a short poll: this runs once per socket at shutdown, never on the live path
            await asyncio.sleep(0.01)
        return self.idle

    def close(self) -> None:
        """The socket is gone: no more sends, no timers left behind."""
        self.closed = True
        if self._throttle is not None:
            self._throttle.cancel()
        if self._heat_timer is not None:
            self._heat_timer.cancel()
        for p in self.pending.values():
            if p.timer is not None:
                p.timer.cancel()
        self.pending.clear()
        self.live = None
        for task in self._tasks:
            task.cancel()
