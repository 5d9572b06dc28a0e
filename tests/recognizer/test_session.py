"""The consumer's brain without Channels: coalescing, ordering, retries, failures, submits."""
from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from recognizer.ratelimit import TokenBucket
from recognizer.session import RecognitionSession, StoreRequest
from worker.jobs import HEAT_TASK, PREPARE_QUEUE, Answer, Job, JobError, Prediction, Saliency

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
    def __init__(self, *, timeout_s: float = 5.0, store_fails: bool = False, store_hangs: bool = False,
                 store_timeout_s: float = 4.0, rate: float = 1000, heat_delay_s: float = 10.0) -> None:
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

        self.session = RecognitionSession(client="c1", sink=self.sink, send=send, store=store,
                                          new_id=lambda: f"j{next(ids)}", timeout_s=timeout_s,
                                          bucket=TokenBucket(rate, rate), store_timeout_s=store_timeout_s,
                                          heat_delay_s=heat_delay_s)

    async def frame(self, **msg: Any) -> int:
        self.seq += 1
        await self.session.handle_frame(json.dumps({**msg, "seq": self.seq}), None)
        return self.seq

    async def stroke(self, drawing: str = "d", stroke: int = 0, final: bool = False, points=((10, 10), (50, 90))) -> int:
        return await self.frame(type="stroke", drawing=drawing, stroke=stroke, points=[list(p) for p in points],
                                final=final, canvas=[280, 280], brush=16)

    async def answer(self, job: Job, digit: int = 3, **extra: Any) -> None:
        await self.session.on_answer(Answer(job.id, job.client, prediction=Prediction(digit, 0.91, PROBS, "m"),
                                            image=bytes(784), **extra), sent_at=0.0)

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
