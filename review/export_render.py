"""The 28x28 images of the drawings an export finds still waiting for their prediction, rendered from
their strokes with the workers' own function: here, or (many of them) by spawned processes, one per
core, in chunks, while the export goes on reading and writing the rows; the files are the same either way."""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from types import TracebackType
from typing import BinaryIO, Self

SIDE = 28
# Drawings waiting for their prediction are rendered here (~0.2 ms each, JSON parsing included, on
# one core of the 2-core VM): from this many on, by spawned processes (one per core, at most
# RENDER_PROCESSES_MAX), RENDER_CHUNK drawings a task. Fewer are rendered in this process: starting a
# process costs ~0.2 s.
RENDER_PROCESSES_FROM = 1000
RENDER_PROCESSES_MAX = 8
RENDER_CHUNK = 250
RENDER_CHUNK_BYTES = 1 << 20  # or fewer drawings a chunk, when their strokes' JSON reaches this


def render_processes(to_render: int) -> int:
    """How many processes render `to_render` drawings: one per core (0, none, on one core or for
    fewer than RENDER_PROCESSES_FROM drawings)."""
    if to_render < RENDER_PROCESSES_FROM:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 0 if cores < 2 else min(cores, RENDER_PROCESSES_MAX)


class Renderer:
    """The 28x28 images of the drawings waiting for their prediction, rendered from their strokes'
    JSON text by digits.inference.render.strokes_json_to_mnist_bytes (the workers' rendering and rounding; no ink:
    all zeros, as the workers store it), RENDER_CHUNK drawings at a time, each put in its row's place
    in the file `images` (rows of SIDE * SIDE bytes, the row there before it is added): in this process, or by
    `processes` spawned ones while this one goes on (here again should those processes fail to start
    or die). At most a few chunks are out at a time (their drawings are kept until their images are
    in, for that fallback): memory stays flat however many drawings wait. Spawned, never forked: the
    admin's download runs in a web process (threads, an event loop, open sockets)."""

    def __init__(self, images: BinaryIO, *, processes: int | None) -> None:
        # Imported here: the web processes load the admin (which exports) but must not load the ML core.
        from digits.inference.render import strokes_json_to_mnist_bytes

        self._render = strokes_json_to_mnist_bytes
        self._images = images
        # None: decided once RENDER_PROCESSES_FROM drawings have come (render_processes)
        self._auto = processes is None
        self._pool: ProcessPoolExecutor | None = None
        self._max_out = 2
        self._added = 0
        if processes is not None:
            self._start(processes)
        self._chunk: list[tuple[str, float, float, float]] = []
        self._chunk_bytes = 0
        self._indexes: list[int] = []
        # the chunks out: their rows, their drawings, and their images' future
        self._out: deque[tuple[list[int], list[tuple[str, float, float, float]], Future[bytes]]] = deque()
        self._rendered = 0

    def _start(self, processes: int) -> None:
        self._auto = False
        self._pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) if processes > 1 else None
        self._max_out = 2 * processes + 2

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def add(self, index: int, strokes_json: str, width: float, height: float, brush: float) -> None:
        """The drawing of row `index` (its image is put in place by the time `fill` returns)."""
        self._chunk.append((strokes_json, width, height, brush))
        self._chunk_bytes += len(strokes_json)
        self._indexes.append(index)
        self._added += 1
        if self._auto and self._added >= RENDER_PROCESSES_FROM:
            self._start(render_processes(self._added))
        if len(self._chunk) >= RENDER_CHUNK or self._chunk_bytes >= RENDER_CHUNK_BYTES:
            self._send()

    def fill(self) -> int:
        """Put every added drawing's image in its row's place; returns how many."""
        self._send()
        while self._out:
            self._take()
        return self._rendered

    def _put(self, indexes: list[int], data: bytes) -> None:
        n = SIDE * SIDE
        end = self._images.tell()  # where the next row goes: back there afterwards
        for k, index in enumerate(indexes):
            self._images.seek(index * n)
            self._images.write(data[k * n : (k + 1) * n])
        self._images.seek(end)
        self._rendered += len(indexes)

    def _take(self) -> None:
        """The oldest chunk out: its images in place (waiting for them, or rendered here)."""
        indexes, drawings, future = self._out.popleft()
        try:
            data = future.result()
        except BrokenProcessPool:
            data = self._render(drawings)
        self._put(indexes, data)

    def _send(self) -> None:
        if not self._chunk:
            return
        future: Future[bytes] | None = None
        if self._pool is not None:
            try:
                future = self._pool.submit(self._render, self._chunk)
            except (BrokenProcessPool, OSError):  # no process could be started
                self._pool.shutdown(wait=False, cancel_futures=False)
                self._pool = None
        if future is None:
            self._put(self._indexes, self._render(self._chunk))
        else:
            self._out.append((self._indexes, self._chunk, future))
        self._chunk, self._indexes, self._chunk_bytes = [], [], 0
        # the finished ones in place; the oldest waited for when too many are out
        while self._out and (self._out[0][2].done() or len(self._out) > self._max_out):
            self._take()
