"""worker.heat_buffer: heat-map jobs of several inference batches leave as one heat task."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from worker.heat_buffer import HeatBuffer
from worker.jobs import Job


def jobs(*ids: str) -> list[Job]:
    return [Job(id=i, client="c", reply="r", image=bytes(784), explain=3) for i in ids]


class FakeLoop:
    def __init__(self) -> None:
        self.calls: list[tuple[float, Callable[[], None]]] = []

    def call_later(self, delay: float, fn: Callable[[], None]) -> Any:
        self.calls.append((delay, fn))

    def run_due(self) -> None:
        calls, self.calls = self.calls, []
        for _, fn in calls:
            fn()


def test_jobs_wait_for_the_timer_then_leave_together() -> None:
    sent: list[list[str]] = []
    loop = FakeLoop()
    buffer = HeatBuffer(lambda js: sent.append([j.id for j in js]), size=8, wait_s=0.02, call_later=lambda: loop.call_later)
    buffer.add(jobs("a"))
    buffer.add(jobs("b", "c"))
    assert sent == [] and [d for d, _ in loop.calls] == [0.02]  # one timer for the first job
    loop.run_due()
    assert sent == [["a", "b", "c"]]
    buffer.add(jobs("d"))
    assert len(loop.calls) == 1  # armed again for the next ones
    loop.run_due()
    assert sent == [["a", "b", "c"], ["d"]]


def test_a_full_buffer_leaves_at_once_and_a_late_timer_finds_nothing() -> None:
    sent: list[list[str]] = []
    loop = FakeLoop()
    buffer = HeatBuffer(lambda js: sent.append([j.id for j in js]), size=3, wait_s=0.02, call_later=lambda: loop.call_later)
    buffer.add(jobs("a"))
    buffer.add(jobs("b", "c", "d"))
    assert sent == [["a", "b", "c", "d"]]
    loop.run_due()
    assert sent == [["a", "b", "c", "d"]]


def test_without_an_event_loop_jobs_leave_at_once() -> None:
    sent: list[list[str]] = []
    buffer = HeatBuffer(lambda js: sent.append([j.id for j in js]), size=8, wait_s=0.02, call_later=lambda: None)
    buffer.add(jobs("a"))
    assert sent == [["a"]]
