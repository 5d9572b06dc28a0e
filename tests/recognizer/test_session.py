"""The consumer's brain without Channels: coalescing, ordering, retries, failures."""

from __future__ import annotations

import asyncio

import pytest

from contract.jobs import ErrorAnswer, JobError
from tests.recognizer.session_harness import Harness, run


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
        _refresh, final = h.sink.jobs
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


def test_worker_errors_reach_the_client_with_their_seq() -> None:
    async def go() -> None:
        h = Harness()
        seq = await h.stroke()
        job = h.sink.jobs[0]
        await h.session.on_answer(ErrorAnswer(job.id, job.client, error=JobError("internal", "inference failed")), 0.0)
        assert h.of("error") == [{"type": "error", "code": "internal", "message": "inference failed", "seq": seq}]

    run(go())


@pytest.mark.parametrize(("frame", "code"), [("nope", "bad_json"), ('{"type": "fly", "seq": 1}', "unknown_type")])
def test_bad_frames_are_answered_and_change_nothing(frame: str, code: str) -> None:
    async def go() -> None:
        h = Harness()
        await h.session.handle_frame(frame, None)
        assert h.sent[-1]["code"] == code and not h.sink.jobs

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
