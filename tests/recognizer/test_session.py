"""The consumer's brain without Channels: coalescing, ordering, retries, failures, submits."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest

from contract.jobs import HEAT_TASK, PREPARE_QUEUE, Answer, Job, JobError, Prediction, Saliency
from recognizer import ratelimit
from recognizer import session as session_module
from recognizer.protocol import MAX_STORED_POINTS, PREDICTION_POINTS_PER_UNIT
from recognizer.ratelimit import AllOf, TokenBucket
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
        heat_delay_s: float = 10.0,
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
            heat_delay_s=heat_delay_s,
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
            Answer(job.id, job.client, prediction=Prediction(digit, 0.91, PROBS, "m"), image=bytes(784), **extra), sent_at=0.0
        )

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["type"] == kind]


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_one_job_in_flight_and_the_newest_state_predicted_next() -> None:
    async def go() -> None:
        h = Harness()
        await h.stroke()
        for _ in range(5):
            last = await h.stroke(points=((60, 60),))
        assert len(h.sink.jobs) == 1, "a second job was sent while one was in flight"
        await h.answer(h.sink.jobs[0])
        assert [m["seq"] for m in h.of("prediction")] == [1]
        assert len(h.sink.jobs) == 2, "the newest state was not asked for after the answer"
        newest = h.sink.jobs[1]
        assert len(newest.strokes.strokes[0]) == 2 + 5  # every point up to the last message
        await h.answer(newest)
        assert [m["seq"] for m in h.of("prediction")] == [1, last]
        assert len(h.sink.jobs) == 2  # nothing dirty: no more work

    run(go())


def test_a_pen_up_state_is_asked_for_at_once_beside_a_pen_down_refresh_in_flight() -> None:
    async def go() -> None:
        h = Harness()
        await h.stroke()  # pen down: a refresh goes out
        up = await h.stroke(points=((60, 60),), final=True)
        assert len(h.sink.jobs) == 2, "the pen-up state waited for the pen-down refresh's round trip"
        refresh, final = h.sink.jobs
        assert len(final.strokes.strokes[0]) == 3
        again = await h.stroke(stroke=1, final=True)  # a pen-up behind a pen-up waits its turn
        assert len(h.sink.jobs) == 2
        await h.answer(final)
        assert len(h.sink.jobs) == 3 and h.sink.jobs[2].strokes.strokes[1] == [[10.0, 10.0], [50.0, 90.0]]
        await h.answer(refresh)  # the older answer comes last: never shown over the newer one
        await h.answer(h.sink.jobs[2])
        assert [m["seq"] for m in h.of("prediction")] == [up, again] and not h.of("error")

    run(go())


def test_the_overtaken_refresh_lost_or_failed_asks_nothing_and_errs_nothing() -> None:
    async def go() -> None:
        h = Harness(timeout_s=0.2)
        await h.stroke()
        await asyncio.sleep(0.1)
        up = await h.stroke(points=((60, 60),), final=True)
        refresh, final = h.sink.jobs
        await asyncio.sleep(0.15)  # the refresh's timeout has passed, the pen-up's has not
        assert len(h.sink.jobs) == 2 and not h.of("error"), "the lost refresh was asked again beside the pen-up"
        await h.answer(final)
        assert [m["seq"] for m in h.of("prediction")] == [up]

        h2 = Harness()
        await h2.stroke()
        up2 = await h2.stroke(points=((60, 60),), final=True)
        await h2.sink.failures[h2.sink.jobs[0].id](ConnectionError("broker hiccup"))
        assert not h2.of("error"), "an error for the newest seq while its own request is still out"
        await h2.answer(h2.sink.jobs[1])
        assert [m["seq"] for m in h2.of("prediction")] == [up2]

    run(go())


def test_a_failed_publish_answers_the_newest_seq_and_the_next_message_tries_again() -> None:
    async def go() -> None:
        h = Harness()
        await h.stroke()
        last = await h.stroke(points=((70, 70),))  # dirty while the first is in flight
        await h.sink.failures[h.sink.jobs[0].id](ConnectionError("broker down"))
        [err] = h.of("error")
        assert err["code"] == "unavailable" and err["seq"] == last
        assert h.session.live is None and not h.session.pending
        nxt = await h.stroke(points=((80, 80),))
        assert len(h.sink.jobs) == 2, "the socket went silent after one failed publish"
        await h.answer(h.sink.jobs[1])
        assert h.of("prediction")[-1]["seq"] == nxt

    run(go())


def test_a_lost_job_is_asked_again_for_the_newest_state() -> None:
    async def go() -> None:
        h = Harness(timeout_s=0.2)
        await h.stroke()
        last = await h.stroke(points=((70, 70),))
        await asyncio.sleep(0.3)  # one timeout, not two
        assert len(h.sink.jobs) == 2, "no retry after the timeout"
        retry = h.sink.jobs[1]
        assert len(retry.strokes.strokes[0]) == 3  # the newest state, not the lost one
        await h.answer(retry)
        await h.answer(h.sink.jobs[0])  # the lost job turns up late: an older answer never overtakes
        assert [m["seq"] for m in h.of("prediction")] == [last] and not h.of("error")

    run(go())


def test_a_job_lost_twice_ends_in_an_error_for_the_newest_seq_not_silence() -> None:
    async def go() -> None:
        h = Harness(timeout_s=0.03)
        last = await h.stroke()
        await asyncio.sleep(0.15)
        assert len(h.sink.jobs) == 2
        [err] = h.of("error")
        assert err["code"] == "unavailable" and err["seq"] == last
        assert h.session.live is None and not h.session.pending

    run(go())


def test_submit_stores_at_once_without_waiting_for_a_prediction() -> None:
    async def go() -> None:
        h = Harness()
        await h.stroke(final=True)
        seq = await h.frame(type="submit", drawing="d", label=3)
        await asyncio.sleep(0.01)
        [stored] = h.of("stored")
        assert stored == {"type": "stored", "drawing": "d", "id": 1, "seq": seq}
        [req] = h.stored
        assert req.label == 3 and req.drawing == "d" and req.strokes.strokes == [[[10.0, 10.0], [50.0, 90.0]]]
        assert len(h.sink.jobs) == 1, "a submit asked the workers for a prediction before storing"

    run(go())


def test_a_failed_store_is_answered_store_failed() -> None:
    async def go() -> None:
        h = Harness(store_fails=True)
        await h.stroke(final=True)
        seq = await h.frame(type="submit", drawing="d", label=None)
        await asyncio.sleep(0.01)
        assert h.of("error")[-1]["code"] == "store_failed" and h.of("error")[-1]["seq"] == seq

    run(go())


def test_a_hung_database_is_store_failed_in_time_and_predictions_go_on_meanwhile() -> None:
    async def go() -> None:
        h = Harness(store_hangs=True, store_timeout_s=0.2)
        await h.stroke(final=True)
        await h.answer(h.sink.jobs[0])
        seq = await h.frame(type="submit", drawing="d", label=None)
        nxt = await h.stroke(drawing="d2")  # the socket is not held up by the store
        await h.answer(h.sink.jobs[1])
        assert h.of("prediction")[-1]["seq"] == nxt and not h.of("error")
        await asyncio.sleep(0.3)
        assert [(m["code"], m["seq"]) for m in h.of("error")] == [("store_failed", seq)]

    run(go())


def test_worker_errors_reach_the_client_with_their_seq() -> None:
    async def go() -> None:
        h = Harness()
        seq = await h.stroke()
        job = h.sink.jobs[0]
        await h.session.on_answer(Answer(job.id, job.client, error=JobError("internal", "inference failed")), 0.0)
        assert h.of("error") == [{"type": "error", "code": "internal", "message": "inference failed", "seq": seq}]

    run(go())


def heat_jobs(h: Harness) -> list[Job]:
    return [j for j in h.sink.jobs if j.explain is not None]


def test_a_pen_up_predictions_heat_map_is_asked_for_once_it_stayed_on_screen() -> None:
    async def go() -> None:
        h = Harness(heat_delay_s=0.05)
        seq = await h.stroke(final=True)
        job = h.sink.jobs[0]
        assert job.saliency is Saliency.NONE and job.explain is None  # the prediction itself: no heat map
        await h.answer(job, digit=7)
        assert not heat_jobs(h), "the heat map was asked for before the prediction stayed on screen"
        await asyncio.sleep(0.08)
        [heat_job] = heat_jobs(h)
        assert heat_job.explain == 7 and heat_job.image == bytes(784) and heat_job.strokes is None
        assert heat_job.task == HEAT_TASK and heat_job.queue == PREPARE_QUEUE
        await h.session.on_answer(Answer(heat_job.id, heat_job.client, saliency=bytes([255]) * 784), 0.0)
        [heat] = h.of("saliency")
        assert (heat["drawing"], heat["seq"]) == ("d", seq)

    run(go())


def test_no_heat_map_for_a_state_replaced_within_the_delay_nor_for_pen_down() -> None:
    async def go() -> None:
        h = Harness(heat_delay_s=0.05)
        await h.stroke(final=True)
        await h.answer(h.sink.jobs[0])
        await h.stroke(stroke=1)  # the next stroke starts at once: the pen-up state is gone
        await h.answer(h.sink.jobs[1])
        await asyncio.sleep(0.08)
        assert not heat_jobs(h), "a heat map for a state nobody looks at any more"
        await h.stroke(stroke=1, points=((90, 90),), final=True)
        await h.answer(h.sink.jobs[2])
        await h.frame(type="clear", drawing="d")  # cleared within the delay: nothing to explain either
        await asyncio.sleep(0.08)
        assert not heat_jobs(h)

    run(go())


async def heat_asked_at_once() -> tuple[Harness, Job]:
    """A session without a heat delay, a pen-up prediction shown, and the heat job it asked for."""
    h = Harness(heat_delay_s=0.0)
    await h.stroke(final=True)
    await h.answer(h.sink.jobs[0])
    await asyncio.sleep(0.01)
    [heat_job] = heat_jobs(h)
    return h, heat_job


def test_a_heat_map_that_comes_after_the_drawing_moved_on_is_dropped() -> None:
    async def go() -> None:
        h, heat_job = await heat_asked_at_once()
        await h.stroke(stroke=1, final=True)
        await h.answer(h.sink.jobs[-1])
        await h.session.on_answer(Answer(heat_job.id, heat_job.client, saliency=bytes(784)), 0.0)
        assert not h.of("saliency")

    run(go())


def test_a_failed_heat_map_publish_errs_nothing() -> None:
    async def go() -> None:
        h, heat_job = await heat_asked_at_once()
        await h.sink.failures[heat_job.id](ConnectionError("broker hiccup"))
        assert not h.of("error") and len(h.of("prediction")) == 1

    run(go())


@pytest.mark.parametrize("frame, code", [("nope", "bad_json"), ('{"type": "fly", "seq": 1}', "unknown_type")])
def test_bad_frames_are_answered_and_change_nothing(frame: str, code: str) -> None:
    async def go() -> None:
        h = Harness()
        await h.session.handle_frame(frame, None)
        assert h.sent[-1]["code"] == code and not h.sink.jobs

    run(go())


def test_a_flood_is_rate_limited() -> None:
    async def go() -> None:
        h = Harness(rate=3)
        for _ in range(6):
            await h.stroke()
        assert [m["code"] for m in h.of("error")].count("rate_limited") >= 2

    run(go())


def test_nothing_is_sent_after_close_and_no_timer_is_left() -> None:
    async def go() -> None:
        h = Harness(timeout_s=0.02)
        await h.stroke()
        job = h.sink.jobs[0]
        h.session.close()
        await asyncio.sleep(0.06)
        await h.answer(job)
        assert not h.sent and len(h.sink.jobs) == 1

    run(go())


def test_pen_down_refreshes_are_spaced_and_pen_up_is_never_held_back() -> None:
    async def go() -> None:
        h = Harness()
        h.session._live_interval_s = 0.1
        await h.stroke()
        await h.answer(h.sink.jobs[0])
        for _ in range(3):  # pen down, right after a prediction: wait for the interval
            await h.stroke(points=((60, 60),))
        assert len(h.sink.jobs) == 1
        await asyncio.sleep(0.15)
        assert len(h.sink.jobs) == 2, "the throttled state was never asked for"
        assert len(h.sink.jobs[1].strokes.strokes[0]) == 5  # the newest state
        await h.answer(h.sink.jobs[1])
        last = await h.stroke(points=((70, 70),), final=True)  # pen up: at once
        assert len(h.sink.jobs) == 3
        await h.answer(h.sink.jobs[2])
        assert h.of("prediction")[-1]["seq"] == last

    run(go())


def test_a_new_drawing_is_not_held_back_by_the_previous_ones_interval() -> None:
    async def go() -> None:
        h = Harness()
        h.session._live_interval_s = 10.0
        await h.stroke(drawing="one")
        await h.answer(h.sink.jobs[0])
        await h.stroke(drawing="two")
        assert len(h.sink.jobs) == 2 and h.sink.jobs[1].strokes.strokes == [[[10.0, 10.0], [50.0, 90.0]]]

    run(go())


def test_slow_answers_stretch_the_pen_down_interval_but_not_pen_up() -> None:
    async def go() -> None:
        h = Harness()
        h.session._live_interval_s = 0.01
        await h.stroke()
        await asyncio.sleep(0.3)  # a slow round trip: the interval becomes 8 x 0.3 x 0.3 s = 0.72 s from the request
        await h.answer(h.sink.jobs[0])
        await h.stroke(points=((60, 60),))
        await asyncio.sleep(0.02)  # well past the base interval (0.01 s), within a few round trips
        assert len(h.sink.jobs) == 1, "an overloaded service was asked again after the base interval"
        await h.stroke(points=((70, 70),), final=True)
        assert len(h.sink.jobs) == 2, "a pen-up state was held back"

    run(go())


def test_a_submit_is_still_stored_when_the_socket_closes_right_after_it() -> None:
    async def go() -> None:
        h = Harness()
        await h.stroke(final=True)
        await h.frame(type="submit", drawing="d", label=4)
        h.session.close()
        await asyncio.sleep(0.01)
        assert [r.label for r in h.stored] == [4] and not h.of("stored")  # kept; nothing sent after close

    run(go())


# ---- work: frames charged by their bytes, predictions by their points; stored drawings bounded


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


def big_stroke(n: int = 10_000) -> list[list[float]]:
    return [[float(i % 280), float(i * 7 % 280)] for i in range(n)]


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
    """The service's default budgets (digitsite/settings.py), its socket's and its address's, and live
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


def test_an_undo_of_an_empty_drawing_is_answered_without_asking_the_workers() -> None:
    async def go() -> None:
        h = Harness()
        await h.stroke(final=True)
        await h.answer(h.sink.jobs[0])
        await h.frame(type="undo", drawing="d")
        await h.answer(h.sink.jobs[1], digit=None)  # the empty drawing's prediction
        seqs = [await h.frame(type="undo", drawing="d"), await h.frame(type="clear", drawing="d")]
        assert len(h.sink.jobs) == 2, "an unchanged drawing was asked for again"
        assert [m["seq"] for m in h.of("prediction")][-2:] == seqs  # every message still has its prediction
        assert h.of("prediction")[-1]["digit"] is None
        await h.stroke(stroke=0)  # a change: asked for
        assert len(h.sink.jobs) == 3

    run(go())


def test_a_drawing_too_large_to_store_is_refused_too_large() -> None:
    async def go() -> None:
        h = Harness()
        per = MAX_STORED_POINTS // 2 + 1
        await h.frame(type="stroke", drawing="d", stroke=0, points=big_stroke(per), final=True, canvas=[280, 280], brush=16)
        await h.frame(type="stroke", drawing="d", stroke=1, points=big_stroke(per), final=True, canvas=[280, 280], brush=16)
        seq = await h.frame(type="submit", drawing="d", label=3)
        await asyncio.sleep(0.01)
        assert h.of("error")[-1]["code"] == "too_large" and h.of("error")[-1]["seq"] == seq and not h.stored
        await h.frame(type="undo", drawing="d")
        await h.frame(type="submit", drawing="d", label=3)
        await asyncio.sleep(0.01)
        assert len(h.stored) == 1 and h.of("stored")

    run(go())


def test_a_drawing_of_too_many_bytes_to_store_is_refused_too_large() -> None:
    async def go() -> None:
        h = Harness()
        long = [[99999.12345678901 - i, 99998.98765432101 - i] for i in range(3_000)]  # ~38 bytes a point
        for k in range(2):
            await h.frame(type="stroke", drawing="d", stroke=k, points=long, final=True, canvas=[280, 280], brush=16)
        assert not h.of("error") and h.session.state.points <= MAX_STORED_POINTS
        seq = await h.frame(type="submit", drawing="d", label=3)
        await asyncio.sleep(0.01)
        assert h.of("error")[-1]["code"] == "too_large" and h.of("error")[-1]["seq"] == seq and not h.stored

    run(go())


def test_a_submit_over_the_addresss_window_is_rate_limited_with_retry_after() -> None:
    async def go() -> None:
        refusals: list[int | None] = [None, 42]

        async def admit() -> int | None:
            return refusals.pop(0)

        h = Harness(admit_submit=admit)
        await h.stroke(final=True)
        await h.frame(type="submit", drawing="d", label=3)
        await asyncio.sleep(0.01)
        seq = await h.frame(type="submit", drawing="d", label=4)
        await asyncio.sleep(0.01)
        assert len(h.stored) == 1
        error = h.of("error")[-1]
        assert (error["code"], error["seq"], error["retry_after"]) == ("rate_limited", seq, 42)

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
