"""A web process's reply channel: the workers' answers, fanned out to its connections in memory.

Every job names this process's channel (`reply`) and the connection or request waiting for it
(`client`). One subscription per process, not one per socket: a worker sends each process its
share of a batch in one message, and nothing is left subscribed when a socket closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from contract.jobs import Answer, Answers, ErrorAnswer, HeatMapAnswer
from recognizer import metrics

log = logging.getLogger(__name__)

Handler = Callable[[Answer, float], Awaitable[None]]  # (answer, when the worker sent it: wall clock)


def observe(answer: Answer, sent_at: float) -> None:
    """Counts the answer and its worker timings (recognizer.metrics), with the time it took from the
    worker to here (`sent_at`: when the worker sent it, wall clock); never stops its delivery."""
    try:
        kind = "heat" if isinstance(answer, HeatMapAnswer) else "prediction"  # (the metric's label values)
        timings = {**answer.timings, "push": max(0.0, time.time() - sent_at) * 1000} if sent_at else answer.timings
        metrics.observe_answer(kind, answer.error.code if isinstance(answer, ErrorAnswer) else None, timings)
    except Exception:
        log.exception("metrics of answer %s", answer.id)


class ReplyHub:
    def __init__(self, layer: Any, on_batch_done: Callable[[str], None] | None = None) -> None:
        self._layer = layer
        self.on_batch_done = on_batch_done  # told the id of each batch whose answers arrived
        self._handlers: dict[str, Handler] = {}
        self._task: asyncio.Task[None] | None = None
        self.channel = ""

    async def start(self) -> None:
        self.channel = await self._layer.new_channel(prefix="web.")  # subscribed before any job names it
        self._task = asyncio.get_running_loop().create_task(self._run())

    def register(self, client: str, handler: Handler) -> None:
        self._handlers[client] = handler

    def unregister(self, client: str) -> None:
        self._handlers.pop(client, None)

    async def _run(self) -> None:
        while True:
            try:
                message = await self._layer.receive(self.channel)
                answers = Answers.from_wire(message)
            except asyncio.CancelledError:
                raise
            except Exception:  # a malformed message must not end the process's answers
                log.exception("unreadable message on %s", self.channel)
                continue
            if answers.batch and self.on_batch_done is not None:
                self.on_batch_done(answers.batch)  # first: the next batch can leave while these are delivered
            for answer in answers.answers:
                observe(answer, answers.sent_at)
                handler = self._handlers.get(answer.client)
                if handler is None:
                    continue  # its socket closed, or its request gave up: nothing waits for it
                try:
                    await handler(answer, answers.sent_at)
                except Exception:
                    log.exception("delivering answer %s failed", answer.id)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
