"""A session's submits (stored at once, bounded, acknowledged) and heat maps (asked for once a
prediction stayed on screen)."""

from __future__ import annotations

import asyncio

from contract.jobs import DrawingJob, HeatMapAnswer, HeatMapJob
from contract.tasks import HEAT_MAP_TASK, PREPROCESS_QUEUE
from recognizer.protocol import MAX_STORED_POINTS
from tests.recognizer.session_harness import Harness, big_stroke, run


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


def heat_jobs(h: Harness) -> list[HeatMapJob]:
    return [j for j in h.sink.jobs if isinstance(j, HeatMapJob)]


def test_a_pen_up_predictions_heat_map_is_asked_for_once_it_stayed_on_screen() -> None:
    async def go() -> None:
        h = Harness(heat_map_delay_s=0.05)
        seq = await h.stroke(final=True)
        job = h.sink.jobs[0]
        assert isinstance(job, DrawingJob)  # the prediction itself: no heat map
        await h.answer(job, digit=7)
        assert not heat_jobs(h), "the heat map was asked for before the prediction stayed on screen"
        await asyncio.sleep(0.08)
        [heat_job] = heat_jobs(h)
        assert heat_job.digit == 7 and heat_job.image == bytes(784)
        assert heat_job.task == HEAT_MAP_TASK and heat_job.queue == PREPROCESS_QUEUE
        await h.session.on_answer(HeatMapAnswer(heat_job.id, heat_job.client, heat_map=bytes([255]) * 784), 0.0)
        [heat] = h.of("saliency")
        assert (heat["drawing"], heat["seq"]) == ("d", seq)

    run(go())


def test_no_heat_map_for_a_state_replaced_within_the_delay_nor_for_pen_down() -> None:
    async def go() -> None:
        h = Harness(heat_map_delay_s=0.05)
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


async def heat_asked_at_once() -> tuple[Harness, HeatMapJob]:
    """A session without a heat delay, a pen-up prediction shown, and the heat job it asked for."""
    h = Harness(heat_map_delay_s=0.0)
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
        await h.session.on_answer(HeatMapAnswer(heat_job.id, heat_job.client, heat_map=bytes(784)), 0.0)
        assert not h.of("saliency")

    run(go())


def test_a_failed_heat_map_publish_errs_nothing() -> None:
    async def go() -> None:
        h, heat_job = await heat_asked_at_once()
        await h.sink.failures[heat_job.id](ConnectionError("broker hiccup"))
        assert not h.of("error") and len(h.of("prediction")) == 1

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
