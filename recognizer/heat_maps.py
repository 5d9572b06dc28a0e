"""The heat map of the prediction on screen: asked for once it has stayed there, sent if it still is.

A pen-up prediction's heat map (the pixels that drove it) is asked for only once that prediction has
stayed on screen for `delay_s` with nothing newer drawn: a backward pass costs three forward ones,
and the heat map of a state the next stroke replaces within a blink would never be looked at.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Protocol

from contract.jobs import HeatMapAnswer, HeatMapJob, Job
from recognizer.protocol import ServerMessage, heat_map_message

MAX_OWED = 8  # heat maps asked for and not yet answered that are still remembered


class JobSink(Protocol):
    @property
    def reply(self) -> str: ...

    def submit(self, job: Job, on_failed: Callable[[BaseException], Awaitable[None]]) -> None: ...


class HeatMaps:
    """One connection's heat maps. `current(drawing, seq)`: that state is still the newest and its
    prediction on screen (worth asking for); `shown(drawing, seq)`: its prediction is on screen."""

    def __init__(
        self,
        *,
        client: str,
        sink: JobSink,
        send: Callable[[ServerMessage], Awaitable[None]],
        new_id: Callable[[], str],
        delay_s: float,
        current: Callable[[str, int], bool],
        shown: Callable[[str, int], bool],
    ) -> None:
        self._client, self._sink, self._send, self._new_id = client, sink, send, new_id
        self._delay_s, self._current, self._shown = delay_s, current, shown
        self._timer: asyncio.TimerHandle | None = None
        self._owed: OrderedDict[str, tuple[str, int]] = OrderedDict()  # job id -> (drawing, seq)

    def after_delay(self, drawing: str, seq: int, image: bytes, digit: int) -> None:
        """Ask for the heat map of this prediction once it has stayed on screen (replaces any waiting)."""
        self.cancel()
        self._timer = asyncio.get_running_loop().call_later(self._delay_s, self._ask, drawing, seq, image, digit)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _ask(self, drawing: str, seq: int, image: bytes, digit: int) -> None:
        self._timer = None
        if not self._current(drawing, seq):
            return
        job_id = self._new_id()
        self._owed[job_id] = (drawing, seq)
        while len(self._owed) > MAX_OWED:
            self._owed.popitem(last=False)

        async def failed(exc: BaseException) -> None:  # a nicety: the prediction is on screen already
            self._owed.pop(job_id, None)

        self._sink.submit(HeatMapJob(job_id, self._client, self._sink.reply, image=image, digit=digit), failed)

    async def on_answer(self, answer: HeatMapAnswer) -> None:
        """Only the heat map of the prediction on screen is worth sending."""
        owed = self._owed.pop(answer.id, None)
        if owed is not None and self._shown(*owed):
            await self._send(heat_map_message(owed[0], owed[1], answer.heat_map))
