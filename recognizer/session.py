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
for `heat_map_delay_s` with nothing newer drawn (recognizer.heat_maps); submits are stored in the
background (recognizer.submits).

Every request ends in an answer: a failed publish is an `unavailable` error for the newest state;
an answer that does not come in time is asked again once (for the newest state), then it is an
`unavailable` error. Nothing waits in silence.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from contract.jobs import Answer, DrawingJob, ErrorAnswer, HeatMapAnswer, PredictionAnswer, Strokes
from recognizer.drawing import DrawingState
from recognizer.heat_maps import HeatMaps, JobSink
from recognizer.protocol import (
    MAX_FRAME_BYTES,
    MAX_STORED_BYTES,
    MAX_STORED_POINTS,
    PREDICTION_POINTS_PER_UNIT,
    PredictionMessage,
    ProtocolError,
    ServerMessage,
    SubmitMsg,
    check_message,
    prediction_message,
)
from recognizer.ratelimit import Budget, Unlimited
from recognizer.submits import AdmitSubmit, Store, StoreRequest, Submits

__all__ = ["RecognitionSession", "StoreRequest"]

log = logging.getLogger(__name__)

Send = Callable[[ServerMessage], Awaitable[None]]
# A socket that goes on sending frames over its bytes budget or over the frame limit while refused
# (more than MAX_REFUSALS such frames, or more than MAX_REFUSED_BYTES of them, within REFUSALS_WINDOW_S)
# is closed: each still costs its reading (~1.5 ms for 150 KB), and a page, refused, backs off (its live
# updates are ~300 bytes). Frames over the message count only are refused, the socket stays open.
MAX_REFUSALS = 20
MAX_REFUSED_BYTES = 512 * 1024
REFUSALS_WINDOW_S = 2.0


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
        heat_map_delay_s: float = 0.0,
        frame_bytes: Budget | None = None,
        work: Budget | None = None,
        admit_submit: AdmitSubmit | None = None,
        on_flood: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self._sink, self._send, self._new_id = sink, send, new_id
        self._timeout_s, self._bucket, self._max_attempts = timeout_s, bucket, max_attempts
        # what the socket's messages ask for: their bytes (a frame over budget is refused before it is
        # parsed), and predictions (charged as they are asked for, even into debt: the live prediction
        # then waits until the debt is paid, coalescing what comes meanwhile; nothing is refused)
        self._frame_bytes: Budget = frame_bytes if frame_bytes is not None else Unlimited()
        self._work: Budget = work if work is not None else Unlimited()
        self._on_flood = on_flood  # closes the socket
        self._refusals, self._refused_bytes, self._refusals_since = 0, 0, 0.0
        self._live_interval_s = live_interval_s
        self._submits = Submits(store, send, lambda: self.closed, timeout_s=store_timeout_s, admit=admit_submit)
        self._heat_maps = HeatMaps(
            client=client,
            sink=sink,
            send=send,
            new_id=new_id,
            delay_s=heat_map_delay_s,
            current=lambda drawing, seq: not self.closed and self._on_screen(drawing, seq) and seq == self.state.seq,
            shown=self._on_screen,
        )
        self._load_factor = load_factor  # a pen-down refresh waits at least this many (smoothed) round trips
        self._round_trip_s = 0.0  # smoothed time from a live request to its answer
        self._live_at = -1e9  # perf_counter when the last live request was made...
        self._live_drawing = ""  # ...and for which drawing
        self._throttle: asyncio.TimerHandle | None = None
        self.state = DrawingState()
        self.last_seq: int | None = None
        self.shown_seq = -1  # newest seq already predicted to the client
        self._shown: tuple[str, int, PredictionMessage] | None = None  # that prediction: (drawing, version, message)
        self.pending: dict[str, Pending] = {}  # job id -> what it answers
        self.live: str | None = None  # job id of the in-flight live (non-submit) request
        self.dirty = False  # the drawing changed since the live request was made
        self._state_at = 0.0  # when the message behind the current state arrived
        self._tasks: set[asyncio.Task[None]] = set()  # retries: cancelled when the socket closes
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
            self._submits.start(msg, self._snapshot(received).strokes)
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
        message: PredictionMessage = {
            **self._shown[2],
            "seq": seq,
            "latency_ms": round((time.perf_counter() - received) * 1000, 2),
        }
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
        job = DrawingJob(job_id, self.client, self._sink.reply, strokes=p.strokes)
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
    def _on_screen(self, drawing: str, seq: int) -> bool:
        """The prediction of that state is the one on screen."""
        return drawing == self.state.drawing and seq == self.shown_seq

    async def on_answer(self, answer: Answer, sent_at: float) -> None:
        if self.closed:
            return
        if isinstance(answer, HeatMapAnswer):
            await self._heat_maps.on_answer(answer)
            return
        was_live = self.live == answer.id
        if was_live:
            self._round_trip_s += 0.3 * (time.perf_counter() - self._live_at - self._round_trip_s)
        p = self._forget(answer.id)
        if p is None:
            return  # an answer to a request already given up on or asked again
        if isinstance(answer, ErrorAnswer):
            await self._send(ProtocolError(answer.error.code, answer.error.message, p.seq).as_message())
        elif p.drawing == self.state.drawing and p.seq > self.shown_seq:
            self.shown_seq = p.seq
            message = self._prediction_message(p, answer, sent_at)
            self._shown = (p.drawing, p.version, message)
            await self._send(message)
            digit = answer.prediction.digit
            if not p.pen_down and answer.image is not None and digit is not None:
                self._heat_maps.after_delay(p.drawing, p.seq, answer.image, digit)
        if was_live and self.dirty:
            self._next_live()

    @staticmethod
    def _prediction_message(p: Pending, answer: PredictionAnswer, sent_at: float) -> PredictionMessage:
        push_ms = round(max(0.0, time.time() - sent_at) * 1000, 3)
        return prediction_message(
            p.drawing,
            p.seq,
            answer.prediction,
            latency_ms=round((time.perf_counter() - p.started) * 1000, 2),
            image=answer.image,
            timings={**answer.timings, "push": push_ms},
        )

    @property
    def idle(self) -> bool:
        """No prediction owed, none waiting for its turn, no submit being stored."""
        return not self.pending and not self._submits.busy and self._throttle is None and not self.dirty

    async def settle(self, deadline: float) -> bool:
        """Wait until idle or loop time `deadline` (a shutdown's drain); returns whether idle."""
        loop = asyncio.get_running_loop()
        # A short poll: this runs once per socket at shutdown, never on the live path, and `idle` is four
        # states that change in many places (one event would have to be set by all of them).
        while not self.idle and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        return self.idle

    def close(self) -> None:
        """The socket is gone: no more sends, no timers left behind."""
        self.closed = True
        if self._throttle is not None:
            self._throttle.cancel()
        self._heat_maps.cancel()
        for p in self.pending.values():
            if p.timer is not None:
                p.timer.cancel()
        self.pending.clear()
        self.live = None
        for task in self._tasks:
            task.cancel()
