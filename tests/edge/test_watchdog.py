"""Time limits for work that must not hang: work running past its limit is reported (and, in a
worker or web process, ends the process), a finished one never, a paused process is no hang."""

from __future__ import annotations

import asyncio
import threading
import time

from edge.watchdog import Watchdog, watch_event_loop


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_work_past_the_limit_is_reported_once_and_finished_work_never() -> None:
    clock, stuck = Clock(), []
    dog = Watchdog(10.0, on_stuck=lambda what, took: stuck.append((what, took)), clock=clock, check_every_s=1.0)
    assert not dog.check()  # nothing running
    dog.begin("task worker.tasks.predict")
    for _ in range(9):
        clock.now += 1
        assert not dog.check()
    dog.end()
    clock.now += 1
    assert not dog.check() and stuck == []  # it ended in time

    dog.begin("task worker.tasks.fill_drawings")
    for _ in range(10):
        clock.now += 1
        assert not dog.check()
    clock.now += 0.5
    assert dog.check()
    assert stuck == [("task worker.tasks.fill_drawings", 10.5)]
    clock.now += 1
    assert not dog.check() and len(stuck) == 1  # told once

    dog.begin("task worker.tasks.prepare")  # the next piece of work has its own allowance
    clock.now += 1
    assert not dog.check() and len(stuck) == 1


def test_a_process_that_was_stopped_meanwhile_is_not_taken_for_stuck() -> None:
    """SIGSTOP, a paused container or VM: the watchdog's own thread stood still too, and the time
    the work stood still with it is not held against the work."""
    clock, stuck = Clock(), []
    dog = Watchdog(10.0, on_stuck=lambda what, took: stuck.append(what), clock=clock, check_every_s=1.0)
    dog.begin("the event loop")
    clock.now += 1
    assert not dog.check()
    clock.now += 60  # nothing ran for a minute
    assert not dog.check() and stuck == []
    for _ in range(10):  # from here on the work has the whole limit again, and no more
        clock.now += 1
        assert not dog.check()
    clock.now += 1
    assert dog.check() and stuck == ["the event loop"]


def test_the_watchdog_thread_notices_work_that_never_returns() -> None:
    told = threading.Event()
    dog = Watchdog(0.2, on_stuck=lambda what, took: told.set(), check_every_s=0.05)
    dog.start()
    try:
        dog.begin("task worker.tasks.heat")
        assert told.wait(2.0)
    finally:
        dog.stop()


def test_an_event_loop_blocked_by_one_callback_is_noticed_and_a_turning_one_never() -> None:
    told: list[tuple[str, float]] = []
    dog = Watchdog(1.0, on_stuck=lambda what, took: told.append((what, took)), check_every_s=0.05)
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    try:
        loop.call_soon_threadsafe(watch_event_loop, loop, dog, 0.05)
        dog.start()
        time.sleep(2.2)  # a loop that turns (more than twice the limit)
        assert told == []
        loop.call_soon_threadsafe(time.sleep, 2.0)  # one callback holds the loop past the limit
        deadline = time.monotonic() + 4
        while not told and time.monotonic() < deadline:
            time.sleep(0.05)
        assert told and told[0][0] == "the event loop" and told[0][1] > 1.0, told
    finally:
        dog.stop()
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        loop.close()
