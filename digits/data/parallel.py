"""Run independent chunks of work in spawned processes, results in order."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

R = TypeVar("R")


def map_chunks(fn: Callable[..., R], calls: Sequence[tuple[Any, ...]], workers: int = 1) -> Iterator[R]:
    """``fn(*args)`` for each ``args`` of ``calls``, yielded in order; in ``workers`` processes when
    more than one (spawned: a forked copy of a process that already runs torch's thread pools can
    hang), else in this one."""
    if workers <= 1 or len(calls) <= 1:
        for args in calls:
            yield fn(*args)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(calls)), mp_context=context) as pool:
        jobs = [pool.submit(fn, *args) for args in calls]
        for job in jobs:
            yield job.result()
