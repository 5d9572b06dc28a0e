"""The session tests' harness: a RecognitionSession with a fake job sink, a recorded send and store."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from contract.jobs import Job, Prediction, PredictionAnswer
from recognizer.ratelimit import TokenBucket
from recognizer.session import RecognitionSession, StoreRequest

PROBS = [0.01] * 3 + [0.91] + [0.01] * 6


class FakeSink:
    """Takes jobs like the process's JobClient; the test answers or fails them by hand."""

    reply = "web.test"

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self.failures: dict[str, Callable[[BaseException], Awaitable[None]]] = {}

    def submit(self, job: Job, on_failed: Callable[[BaseException], Awaitable[None]]) -> None:
        self.jobs.append(job)
        self.failures[job.id] = on_failed


class Harness:
    def __init__(
        self,
        *,
        timeout_s: float = 5.0,
        store_fails: bool = False,
        store_hangs: bool = False,
        store_timeout_s: float = 4.0,
        rate: float = 1000,
        heat_map_delay_s: float = 10.0,
        **limits: Any,
    ) -> None:
        self.sink = FakeSink()
        self.sent: list[dict[str, Any]] = []
        self.stored: list[StoreRequest] = []
        ids = itertools.count()
        self.seq = 0

        async def send(msg: dict[str, Any]) -> None:
            self.sent.append(msg)

        async def store(req: StoreRequest) -> int:
            if store_fails:
                raise RuntimeError("database down")
            if store_hangs:
                await asyncio.sleep(3600)
            self.stored.append(req)
            return len(self.stored)

        self.session = RecognitionSession(
            client="c1",
            sink=self.sink,
            send=send,
            store=store,
            new_id=lambda: f"j{next(ids)}",
            timeout_s=timeout_s,
            bucket=TokenBucket(rate, rate),
            store_timeout_s=store_timeout_s,
            heat_map_delay_s=heat_map_delay_s,
            **limits,
        )

    async def frame(self, **msg: Any) -> int:
        self.seq += 1
        await self.session.handle_frame(json.dumps({**msg, "seq": self.seq}), None)
        return self.seq

    async def stroke(self, drawing: str = "d", stroke: int = 0, final: bool = False, points=((10, 10), (50, 90))) -> int:
        return await self.frame(
            type="stroke",
            drawing=drawing,
            stroke=stroke,
            points=[list(p) for p in points],
            final=final,
            canvas=[280, 280],
            brush=16,
        )

    async def answer(self, job: Job, digit: int = 3, **extra: Any) -> None:
        await self.session.on_answer(
            PredictionAnswer(job.id, job.client, prediction=Prediction(digit, 0.91, PROBS, "m"), image=bytes(784), **extra),
            sent_at=0.0,
        )

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["type"] == kind]


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def big_stroke(n: int = 10_000) -> list[list[float]]:
    return [[float(i % 280), float(i * 7 % 280)] for i in range(n)]
