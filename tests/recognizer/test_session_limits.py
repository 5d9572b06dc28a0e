"""A session's budgets: frames charged by their bytes, predictions by their points; a socket that
sends on while refused is closed."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from recognizer import ratelimit
from recognizer import session as session_module
from recognizer.protocol import PREDICTION_POINTS_PER_UNIT
from recognizer.ratelimit import AllOf, TokenBucket
from tests.recognizer.session_harness import Harness, big_stroke, run


def test_a_flood_is_rate_limited() -> None:
    async def go() -> None:
        h = Harness(rate=3)
        for _ in range(6):
            await h.stroke()
        assert [m["code"] for m in h.of("error")].count("rate_limited") >= 2

    run(go())


class FakeClock:
    """time.monotonic for the token buckets: a test moves it by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The buckets' clock, and the session's (its live interval); the event loop keeps its own."""
    fake = FakeClock()
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(monotonic=fake))
    monkeypatch.setattr(session_module, "time", SimpleNamespace(perf_counter=fake, time=time.time))
    return fake


def fire_throttle(h: Harness) -> None:
    """The session's pending timer (a live interval, or a debt), fired now."""
    if h.session._throttle is not None:
        h.session._throttle.cancel()
        h.session._throttle_over()


def test_a_frame_over_the_bytes_budget_is_refused_before_it_is_parsed(clock: FakeClock) -> None:
    async def go() -> None:
        h = Harness(frame_bytes=TokenBucket(rate=1000, burst=200_000))
        await h.frame(type="stroke", drawing="d", stroke=0, points=big_stroke(), final=True, canvas=[280, 280], brush=16)
        assert not h.of("error") and len(h.sink.jobs) == 1  # the first fits the burst
        await h.frame(type="undo", drawing="d")
        h.seq += 1
        await h.session.handle_frame("x" * 150_000, None)  # not even JSON: refused for its size first
        assert h.of("error")[-1]["code"] == "rate_limited"
        clock.now += 1.0  # 1,000 bytes later: a page's live update still goes through
        await h.stroke(stroke=0)
        assert [m["code"] for m in h.of("error")] == ["rate_limited"]

    run(go())


def test_a_pages_fast_drawing_is_never_refused_nor_held_back(clock: FakeClock) -> None:
    """The service's default budgets (digitsite/settings/base.py), its socket's and its address's, and live
    interval: a pen at 240 points a second, a message every 50 ms (the page's pace), 16 strokes of 2 s
    each (7,680 points: a digit has a few hundred), every prediction answered at once."""
    from django.conf import settings

    async def go() -> None:
        h = Harness(
            frame_bytes=AllOf(
                TokenBucket(settings.WS_BYTES_PER_SECOND, settings.WS_BYTES_BURST),
                TokenBucket(settings.WS_ADDRESS_BYTES_PER_SECOND, settings.WS_ADDRESS_BYTES_BURST),
            ),
            work=AllOf(
                TokenBucket(settings.WS_PREDICTIONS_PER_SECOND, settings.WS_PREDICTIONS_BURST),
                TokenBucket(settings.WS_ADDRESS_PREDICTIONS_PER_SECOND, settings.WS_ADDRESS_PREDICTIONS_BURST),
            ),
            live_interval_s=settings.WS_LIVE_INTERVAL_MS / 1000,
        )
        work = h.session._work
        for k in range(16):
            for i in range(40):
                points = [(round(100 + 3.3 * i + 0.1 * j, 1), round(120.5 + 2.2 * k, 1)) for j in range(12)]
                await h.stroke(stroke=k, points=points, final=i == 39)
                for job in list(h.sink.jobs):
                    if job.id in h.session.pending:
                        await h.answer(job)
                assert work.wait_s() == 0, f"stroke {k}, message {i}: a prediction would wait for the budget"
                clock.now += 0.05
                fire_throttle(h)  # the live interval's refresh, on time
        assert not h.of("error")
        assert len(h.sink.jobs) >= 16 * 15  # (about every other message: the live interval)

    run(go())


def test_predictions_are_charged_by_their_points_and_wait_while_in_debt(clock: FakeClock) -> None:
    async def go() -> None:
        work = TokenBucket(rate=1.0, burst=4.0)
        h = Harness(work=work)
        await h.frame(type="stroke", drawing="d", stroke=0, points=big_stroke(), final=True, canvas=[280, 280], brush=16)
        assert work.available() == pytest.approx(4.0 - (1 + 10_000 / PREDICTION_POINTS_PER_UNIT))  # a job, its points
        await h.answer(h.sink.jobs[0])
        await h.frame(type="undo", drawing="d")
        await h.frame(type="stroke", drawing="d", stroke=0, points=big_stroke(), final=True, canvas=[280, 280], brush=16)
        await h.answer(h.sink.jobs[1])  # the undo went at once (0.5 left), its answer comes
        last = await h.frame(type="undo", drawing="d")
        assert len(h.sink.jobs) == 3  # the second big stroke went too (into debt: -3)
        await h.answer(h.sink.jobs[2])
        assert len(h.sink.jobs) == 3 and h.session.dirty, "asked for more while in debt"
        assert h.session._throttle is not None  # ...it waits for the debt to be paid, not refused
        fire_throttle(h)  # too early: waits on
        assert len(h.sink.jobs) == 3 and h.session._throttle is not None
        clock.now += 3.0
        fire_throttle(h)
        assert len(h.sink.jobs) == 4 and h.sink.jobs[3].strokes.strokes == []
        await h.answer(h.sink.jobs[3])
        assert h.of("prediction")[-1]["seq"] == last and not h.of("error")

    run(go())


def test_a_socket_that_sends_on_while_refused_is_closed(clock: FakeClock) -> None:
    from recognizer.session import MAX_REFUSALS

    async def go() -> None:
        closed: list[bool] = []

        async def on_flood() -> None:
            closed.append(True)

        h = Harness(frame_bytes=TokenBucket(rate=1000, burst=2000), on_flood=on_flood)
        for _ in range(MAX_REFUSALS):  # refused again and again, but no more than a page's burst
            await h.session.handle_frame("x" * 5000, None)
        assert not closed and len(h.of("error")) == MAX_REFUSALS
        clock.now += 10.0  # later: the count starts again
        for _ in range(MAX_REFUSALS):
            await h.session.handle_frame("x" * 5000, None)
        assert not closed
        await h.session.handle_frame("x" * 5000, None)
        assert closed == [True] and h.session.closed and "closing" in h.of("error")[-1]["message"]
        await h.stroke()  # nothing more is read
        assert not h.sink.jobs and len(h.sent) == 2 * MAX_REFUSALS + 1

    run(go())


def test_a_flood_of_small_messages_is_refused_but_not_closed() -> None:
    async def go() -> None:
        closed: list[bool] = []

        async def on_flood() -> None:
            closed.append(True)

        h = Harness(rate=3, on_flood=on_flood)
        for _ in range(100):
            await h.frame(type="clear", drawing="d")
        assert not closed and h.of("error")[-1]["code"] == "rate_limited"

    run(go())


def test_a_socket_that_sends_on_huge_frames_while_refused_is_closed_sooner(clock: FakeClock) -> None:
    from recognizer.session import MAX_REFUSED_BYTES

    async def go() -> None:
        closed: list[bool] = []

        async def on_flood() -> None:
            closed.append(True)

        h = Harness(frame_bytes=TokenBucket(rate=1000, burst=2000), on_flood=on_flood)
        huge = "x" * 150_000
        for _ in range(MAX_REFUSED_BYTES // len(huge)):
            await h.session.handle_frame(huge, None)
        assert not closed
        await h.session.handle_frame(huge, None)
        assert closed == [True]

    run(go())
