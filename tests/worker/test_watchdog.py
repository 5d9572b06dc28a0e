"""The solo pool's time limit: a task running past it is reported (and, in a worker, ends the process)."""
from __future__ import annotations

import threading

from worker.watchdog import TaskWatchdog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_task_past_the_limit_is_reported_once_and_a_finished_one_never() -> None:
    clock, stuck = Clock(), []
    dog = TaskWatchdog(10.0, on_stuck=lambda task, took: stuck.append((task, took)), clock=clock)
    assert not dog.check()  # nothing running
    dog.task_started("worker.tasks.predict")
    clock.now += 9.5
    assert not dog.check() and stuck == []
    dog.task_finished()
    clock.now += 60
    assert not dog.check() and stuck == []  # it ended in time, however long ago it started

    dog.task_started("worker.tasks.fill_drawings")
    clock.now += 10.5
    assert dog.check()
    assert stuck == [("worker.tasks.fill_drawings", 10.5)]
    clock.now += 5
    assert not dog.check() and len(stuck) == 1  # told once

    dog.task_started("worker.tasks.prepare")  # the next task starts its own clock
    clock.now += 2
    assert not dog.check() and len(stuck) == 1


def test_the_watchdog_thread_notices_a_task_that_never_returns() -> None:
    told = threading.Event()
    dog = TaskWatchdog(0.2, on_stuck=lambda task, took: told.set(), check_every_s=0.05)
    dog.start()
    try:
        dog.task_started("worker.tasks.heat")
        assert told.wait(2.0)
    finally:
        dog.stop()
