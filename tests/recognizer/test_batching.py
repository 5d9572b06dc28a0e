"""Jobs of all connections leave in batches: no wait when quiet, bigger batches under load."""
from __future__ import annotations

import asyncio
import threading
import time

from recognizer.batching import JobBatcher
from worker.jobs import Job, Strokes


def job(i: int, *, upload: bool = False) -> Job:
    if upload:
        return Job(id=f"u{i}", client="c", reply="r", upload=b"png")
    return Job(id=f"j{i}", client="c", reply="r", strokes=Strokes([[[1.0, 2.0]]], (280.0, 280.0), 16.0))


class Recorder:
    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.batches: list[tuple[str, list[str]]] = []
        self.delay, self.fail = delay, fail
        self.lock = threading.Lock()

    def __call__(self, queue: str, jobs: list[Job]) -> None:
        time.sleep(self.delay)
        if self.fail:
            raise ConnectionError("broker down")
        with self.lock:
            self.batches.append((queue, [j.id for j in jobs]))


async def settle(batcher: JobBatcher) -> None:
    while batcher._flushing is not None:
        await asyncio.sleep(0.005)


async def nothing(exc: BaseException) -> None:
    raise AssertionError(f"unexpected failure {exc}")


def test_jobs_of_one_loop_turn_leave_as_one_batch_and_a_lone_job_is_not_held_back() -> None:
    async def go() -> None:
        rec = Recorder()
        b = JobBatcher(rec)
        for i in range(5):
            b.add(job(i), nothing)
        await settle(b)
        assert rec.batches == [("inference", ["j0", "j1", "j2", "j3", "j4"])]
        start = time.perf_counter()
        b.add(job(9), nothing)
        await settle(b)
        assert rec.batches[-1] == ("inference", ["j9"])
        assert time.perf_counter() - start < 0.05
    asyncio.run(go())


def test_jobs_added_during_a_publish_leave_together_in_the_next() -> None:
    async def go() -> None:
        rec = Recorder(delay=0.05)
        b = JobBatcher(rec)
        b.add(job(0), nothing)
        await asyncio.sleep(0.01)  # the first publish is under way
        for i in range(1, 8):
            b.add(job(i), nothing)
            await asyncio.sleep(0.002)
        await settle(b)
        assert rec.batches == [("inference", ["j0"]), ("inference", [f"j{i}" for i in range(1, 8)])]
        assert (b.published_batches, b.published_jobs) == (2, 8)
    asyncio.run(go())


def test_batches_are_split_by_queue_and_size() -> None:
    async def go() -> None:
        rec = Recorder()
        b = JobBatcher(rec, max_batch=3)
        for i in range(7):
            b.add(job(i), nothing)
        b.add(job(0, upload=True), nothing)
        await settle(b)
        assert rec.batches == [("inference", ["j0", "j1", "j2"]), ("inference", ["j3", "j4", "j5"]),
                               ("inference", ["j6"]), ("preprocess", ["u0"])]
    asyncio.run(go())


def test_a_failed_publish_tells_every_job_of_the_batch_and_the_next_batch_still_goes() -> None:
    async def go() -> None:
        rec = Recorder(fail=True)
        b = JobBatcher(rec)
        told: list[str] = []

        def on_failed(name: str):
            async def failed(exc: BaseException) -> None:
                assert isinstance(exc, ConnectionError)
                told.append(name)
            return failed

        for i in range(3):
            b.add(job(i), on_failed(f"j{i}"))
        await settle(b)
        assert sorted(told) == ["j0", "j1", "j2"]
        rec.fail = False
        b.add(job(5), nothing)
        await settle(b)
        assert rec.batches == [("inference", ["j5"])]
    asyncio.run(go())


def test_publishing_on_the_event_loop_batches_the_same_way() -> None:
    async def go() -> None:
        rec = Recorder()
        b = JobBatcher(rec, in_thread=False)
        for i in range(4):
            b.add(job(i), nothing)
        await settle(b)
        b.add(job(7), nothing)
        await settle(b)
        assert rec.batches == [("inference", ["j0", "j1", "j2", "j3"]), ("inference", ["j7"])]
    asyncio.run(go())
