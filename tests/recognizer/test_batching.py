"""Dynamic batching: no wait when quiet; while the window of batches out is full, jobs gather."""

from __future__ import annotations

import asyncio
import threading
import time

from contract.jobs import Batch, DrawingJob, HeatMapJob, Job, Strokes, UploadJob
from contract.tasks import HEAT_MAP_TASK as HEAT
from contract.tasks import PREDICT_TASK as PREDICT
from contract.tasks import PREPROCESS_TASK as PREPROCESS
from recognizer.batching import JobBatcher


def job(i: int, *, upload: bool = False) -> Job:
    if upload:
        return UploadJob(id=f"u{i}", client="c", reply="r", upload=b"png")
    return DrawingJob(id=f"j{i}", client="c", reply="r", strokes=Strokes([[[1.0, 2.0]]], (280.0, 280.0), 16.0))


class Recorder:
    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.batches: list[tuple[str, list[str]]] = []
        self.ids: list[str] = []
        self.delay, self.fail = delay, fail
        self.lock = threading.Lock()

    def __call__(self, batch: Batch) -> None:
        task = batch.task
        time.sleep(self.delay)
        if self.fail:
            raise ConnectionError("broker down")
        with self.lock:
            self.batches.append((task, [j.id for j in batch.jobs]))
            self.ids.append(batch.id)


async def settle(batcher: JobBatcher) -> None:
    """Wait until the batcher has no flush running (each flush's end may start none or another)."""
    await asyncio.sleep(0)
    while (flushing := batcher._flushing) is not None:
        await asyncio.wait([flushing])


async def nothing(exc: BaseException) -> None:
    raise AssertionError(f"unexpected failure {exc}")


def test_jobs_of_one_loop_turn_leave_as_one_batch_and_a_lone_job_is_not_held_back() -> None:
    async def go() -> None:
        rec = Recorder()
        b = JobBatcher(rec)
        for i in range(5):
            b.add(job(i), nothing)
        await settle(b)
        assert rec.batches == [(PREDICT, ["j0", "j1", "j2", "j3", "j4"])]
        start = time.perf_counter()
        b.add(job(9), nothing)
        await settle(b)
        assert rec.batches[-1] == (PREDICT, ["j9"])
        assert time.perf_counter() - start < 0.05

    asyncio.run(go())


def test_while_the_window_is_full_jobs_gather_and_leave_together_when_a_batch_comes_back() -> None:
    async def go() -> None:
        rec = Recorder()
        b = JobBatcher(rec, in_flight=2)
        b.add(job(0), nothing)
        await settle(b)
        b.add(job(1), nothing)
        await settle(b)
        for i in range(2, 9):  # the window (2) is full: these wait here, not in Redis
            b.add(job(i), nothing)
            await settle(b)
        assert [ids for _, ids in rec.batches] == [["j0"], ["j1"]] and b.waiting == 7 and b.in_flight == 2
        b.done("not-ours")  # an unknown batch frees nothing
        await settle(b)
        assert len(rec.batches) == 2
        b.done(rec.ids[0])
        await settle(b)
        assert rec.batches[-1] == (PREDICT, [f"j{i}" for i in range(2, 9)])
        assert (b.published_batches, b.published_jobs, b.waiting) == (3, 9, 0)

    asyncio.run(go())


def test_a_batch_never_answered_stops_holding_the_window() -> None:
    async def go() -> None:
        rec = Recorder()
        b = JobBatcher(rec, in_flight=1, lost_after_s=0.1)
        b.add(job(0), nothing)  # lost: never answered
        await settle(b)
        b.add(job(1), nothing)
        await settle(b)
        assert len(rec.batches) == 1
        await asyncio.sleep(0.2)  # nothing else happens: the batcher must wake by itself
        await settle(b)
        assert [ids for _, ids in rec.batches] == [["j0"], ["j1"]]

    asyncio.run(go())


def test_uploads_do_not_wait_for_the_prediction_window_and_batches_split_by_size() -> None:
    async def go() -> None:
        rec = Recorder()
        b = JobBatcher(rec, max_batch=3, in_flight=5)
        for i in range(7):
            b.add(job(i), nothing)
        b.add(job(0, upload=True), nothing)
        await settle(b)
        assert sorted(rec.batches) == sorted(
            [(PREDICT, ["j0", "j1", "j2"]), (PREDICT, ["j3", "j4", "j5"]), (PREDICT, ["j6"]), (PREPROCESS, ["u0"])]
        )
        full = JobBatcher(Recorder(), in_flight=1)
        full.add(job(0), nothing)
        await settle(full)
        full.add(job(1, upload=True), nothing)
        full.add(HeatMapJob(id="h1", client="c", reply="r", image=bytes(784), digit=3), nothing)
        await settle(full)
        assert full.waiting == 0, "an upload or a heat map waited for a prediction batch's window"
        # each kind leaves as its own task: an upload and a heat map never share a message
        rec2 = Recorder()
        mixed = JobBatcher(rec2)
        mixed.add(job(2, upload=True), nothing)
        mixed.add(HeatMapJob(id="h2", client="c", reply="r", image=bytes(784), digit=3), nothing)
        await settle(mixed)
        assert sorted(rec2.batches) == sorted([(PREPROCESS, ["u2"]), (HEAT, ["h2"])])

    asyncio.run(go())


def test_a_failed_publish_tells_every_job_of_the_batch_and_frees_its_place() -> None:
    async def go() -> None:
        rec = Recorder(fail=True)
        b = JobBatcher(rec, in_flight=1)
        told: list[str] = []

        def on_failed(name: str):
            async def failed(exc: BaseException) -> None:
                assert isinstance(exc, ConnectionError)
                told.append(name)

            return failed

        for i in range(3):
            b.add(job(i), on_failed(f"j{i}"))
        await settle(b)
        assert sorted(told) == ["j0", "j1", "j2"] and b.in_flight == 0
        rec.fail = False
        b.add(job(5), nothing)
        await settle(b)
        assert rec.batches == [(PREDICT, ["j5"])]

    asyncio.run(go())


def test_publishing_on_the_event_loop_batches_the_same_way() -> None:
    async def go() -> None:
        rec = Recorder()
        b = JobBatcher(rec, in_thread=False, in_flight=1)
        for i in range(4):
            b.add(job(i), nothing)
        await settle(b)
        b.add(job(7), nothing)
        b.add(job(8), nothing)
        await settle(b)
        b.done(rec.ids[0])
        await settle(b)
        assert rec.batches == [(PREDICT, ["j0", "j1", "j2", "j3"]), (PREDICT, ["j7", "j8"])]

    asyncio.run(go())
