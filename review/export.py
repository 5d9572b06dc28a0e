"""Stored drawings out as training data: the 28x28 images, labels and ids (one .npz), the raw
strokes (JSON lines) and a CSV manifest, row for row in the same order (by id).

Only reviewed drawings by default: anyone can submit a drawing and say what digit it is, so the
person's label alone is training data only when asked for (`include_unreviewed`), and the manifest's
`label_source` says for every row whose word the label is: "reviewer" (the reviewer's label),
"person-reviewed" (the person's, let stand by a reviewer) or "person-unreviewed" (the person's alone).
The label is the effective one (the reviewer's, else the person's). Excluded drawings, drawings nobody
labelled and (by default) drawings nobody reviewed are left out, and counted. A drawing still waiting
for its prediction has no stored 28x28 image yet: it is rendered here from its strokes with the same
function the workers use (digits.inference.render.strokes_to_mnist), so the export never waits for a
worker. Many of them (all 10,000
of a large export, say) are rendered by spawned processes, one per core, in chunks, while this
process goes on reading and writing the rows; the files are the same either way.

Memory stays flat in the number of rows: rows are fetched FETCH_ROWS at a time, the strokes and the
manifest are written out row by row, the images go to a temporary file as they come (784 bytes a row,
put into the npz a block at a time at the end), only the labels and ids are kept (9 bytes a row: 9 MB
at a million), and only a few chunks of drawings being rendered are held at a time. The counts of
what was left out are taken after the rows are written, so the first rows go out at once.

The admin's download streams the zip as it is made (`export_zip_stream`, the same code path as the
command's `export_to_files`): the manifest is written into the zip row by row as the rows are read
(the download starts within a moment, however many rows), then the npz and the strokes are copied in
from their temporary files; the summary is the zip's comment (the headers are gone before it is
known). Nothing of the export's size is held in memory at any point.
"""

from __future__ import annotations

import array
import csv
import io
import json
import multiprocessing
import os
import shutil
import tempfile
import time
import zipfile
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO, BinaryIO, Self, TextIO

import numpy as np
from django.db import connections, transaction
from django.db.models import Count, Q, QuerySet, TextField
from django.db.models.functions import Cast

from recognizer.models import EFFECTIVE_LABEL, Drawing

SIDE = 28
# Drawings waiting for their prediction are rendered here (~0.2 ms each, JSON parsing included, on
# one core of the 2-core VM): from this many on, by spawned processes (one per core, at most
# RENDER_PROCESSES_MAX), RENDER_CHUNK drawings a task. Fewer are rendered in this process: starting a
# process costs ~0.2 s.
RENDER_PROCESSES_FROM = 1000
RENDER_PROCESSES_MAX = 8
RENDER_CHUNK = 250
RENDER_CHUNK_BYTES = 1 << 20  # or fewer drawings a chunk, when their strokes' JSON reaches this
MANIFEST_FIELDS = (
    "index",
    "id",
    "label",
    "label_source",
    "person_label",
    "review_label",
    "predicted_digit",
    "confidence",
    "uncertain",
    "reason",
    "model_name",
    "created_at",
    "reviewed_at",
    "reviewed_by",
    "image",
    "client_id",
)
# whose word a row's label is (the manifest's label_source)
REVIEWER, PERSON_REVIEWED, PERSON_UNREVIEWED = "reviewer", "person-reviewed", "person-unreviewed"
COPY_BUFFER = 1 << 20
# Rows fetched from the database at a time: a stored drawing's strokes are up to 192 KB of JSON
# (protocol.MAX_STORED_BYTES), so a fetch of FETCH_ROWS holds at most ~10 MB of them (twice: the
# driver's buffer and the strings) however large the export; a page's drawing is ~3 KB.
FETCH_ROWS = 50
ZIP_NAMES = ("drawings.npz", "drawings.strokes.jsonl", "drawings.csv")
# The streamed zip is handed on whenever this much of it is ready.
STREAM_BLOCK = 1 << 18
# The npz's members are deflated at this level (1: several times faster than zlib's default 6, and
# nearly as small on 28x28 digits).
NPZ_COMPRESSLEVEL = 1

_COLUMNS = (
    "pk",
    "effective",
    "label",
    "review_label",
    "predicted_digit",
    "confidence",
    "uncertain",
    "reason",
    "model_name",
    "created_at",
    "reviewed_at",
    "reviewed_by__username",
    "client_id",
    "canvas_width",
    "canvas_height",
    "brush",
    "image28",
    "strokes_json",
)


@dataclass(frozen=True)
class ExportSummary:
    exported: int
    rendered: int  # of those, images rendered from strokes here (prediction still pending)
    excluded: int  # left out: excluded from training
    unlabelled: int  # left out: no label from the person or a reviewer
    unreviewed: int = 0  # left out: labelled by the person only, never reviewed (the default)
    person_unreviewed: int = 0  # exported with the person's label alone (only when asked for)

    def describe(self) -> str:
        rendered = f" ({self.rendered} rendered from their strokes, prediction pending)" if self.rendered else ""
        unreviewed = (
            f", {self.person_unreviewed} of them with the person's label alone (unreviewed)" if self.person_unreviewed else ""
        )
        return (
            f"{self.exported} drawings exported{rendered}{unreviewed}; left out: {self.excluded} excluded, "
            f"{self.unlabelled} unlabelled, {self.unreviewed} not reviewed"
        )


def drawings_for_export(*, since: datetime | None = None) -> QuerySet[Drawing]:
    """The drawings an export looks at (excluded, unlabelled and unreviewed ones are dropped by the
    writer, which counts them)."""
    qs = Drawing.objects.all()
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    return qs


def export_paths(out: Path) -> tuple[Path, Path, Path]:
    """FILE.npz -> (FILE.npz, FILE.strokes.jsonl, FILE.csv)."""
    out = Path(out)
    return out, out.with_suffix(".strokes.jsonl"), out.with_suffix(".csv")


def export_to_files(
    drawings: QuerySet[Drawing], out: Path, *, include_unreviewed: bool = False, processes: int | None = None
) -> ExportSummary:
    npz_path, strokes_path, csv_path = export_paths(out)
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    with (
        npz_path.open("wb") as npz,
        strokes_path.open("w", encoding="utf-8") as strokes,
        csv_path.open("w", encoding="utf-8", newline="") as manifest,
    ):
        return export_write(
            drawings, npz=npz, strokes=strokes, manifest=manifest, include_unreviewed=include_unreviewed, processes=processes
        )


def export_zip(
    drawings: QuerySet[Drawing], out: BinaryIO, *, include_unreviewed: bool = False, processes: int | None = None
) -> ExportSummary:
    """The same three files in one zip written into `out` (export_zip_stream's blocks, as they come)."""
    summary: list[ExportSummary] = []
    for block in export_zip_stream(drawings, include_unreviewed=include_unreviewed, processes=processes, summary=summary):
        out.write(block)
    return summary[0]


class _Sink:
    """Where zipfile writes the streamed zip: no tell() or seek(), so zipfile writes each member's
    sizes after its data (a data descriptor) instead of going back for them."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        self.buffer += data
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        block, self.buffer = bytes(self.buffer), bytearray()
        return block


def export_zip_stream(
    drawings: QuerySet[Drawing],
    *,
    include_unreviewed: bool = False,
    processes: int | None = None,
    summary: list[ExportSummary] | None = None,
) -> Iterator[bytes]:
    """The zip of the three files, a block (about STREAM_BLOCK bytes) at a time, as it is made: the
    manifest (drawings.csv) first, written into the zip row by row while the rows are read, then the
    npz and the strokes, copied in from the temporary files they were written to meanwhile. The
    summary is the zip's comment, and is appended to `summary` when given."""
    sink = _Sink()
    with ExitStack() as stack:
        npz = stack.enter_context(tempfile.TemporaryFile())
        strokes = stack.enter_context(io.TextIOWrapper(tempfile.TemporaryFile(), encoding="utf-8"))
        zf = stack.enter_context(zipfile.ZipFile(sink, "w"))
        stamp = time.localtime()[:6]

        def member(name: str, method: int) -> IO[bytes]:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = method
            return zf.open(info, "w", force_zip64=True)  # sizes unknown until written: room for large ones

        with io.TextIOWrapper(member(ZIP_NAMES[2], zipfile.ZIP_DEFLATED), encoding="utf-8", newline="") as manifest:
            steps = export_steps(
                drawings, npz=npz, strokes=strokes, manifest=manifest, include_unreviewed=include_unreviewed, processes=processes
            )
            while True:
                try:
                    next(steps)
                except StopIteration as done:
                    result: ExportSummary = done.value
                    break
                if len(sink.buffer) >= STREAM_BLOCK:
                    yield sink.take()
        strokes.flush()
        for name, part, method in (
            (ZIP_NAMES[0], npz, zipfile.ZIP_STORED),  # already compressed
            (ZIP_NAMES[1], strokes.buffer, zipfile.ZIP_DEFLATED),
        ):
            part.seek(0)
            with member(name, method) as entry:
                while block := part.read(COPY_BUFFER):
                    entry.write(block)
                    if len(sink.buffer) >= STREAM_BLOCK:
                        yield sink.take()
        zf.comment = result.describe().encode()[:65535]
    if summary is not None:
        summary.append(result)
    yield sink.take()  # the central directory, written when the zip closed


def export_zip_file(
    drawings: QuerySet[Drawing], *, include_unreviewed: bool = False, processes: int | None = None
) -> tuple[IO[bytes], ExportSummary]:
    """The zip in a temporary file (gone once closed), read from its start: what a response streams."""
    out = tempfile.TemporaryFile()
    try:
        summary = export_zip(drawings, out, include_unreviewed=include_unreviewed, processes=processes)
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return out, summary


def export_to_zip(
    drawings: QuerySet[Drawing], *, include_unreviewed: bool = False, processes: int | None = None
) -> tuple[bytes, ExportSummary]:
    """The zip's bytes (small exports and tests; the admin's download streams export_zip_file's)."""
    out = io.BytesIO()
    summary = export_zip(drawings, out, include_unreviewed=include_unreviewed, processes=processes)
    return out.getvalue(), summary


def label_source(review_label: int | None, reviewed_at: datetime | None) -> str:
    """Whose word a row's label is (the manifest's label_source)."""
    if review_label is not None:
        return REVIEWER
    return PERSON_REVIEWED if reviewed_at is not None else PERSON_UNREVIEWED


def export_write(
    drawings: QuerySet[Drawing],
    *,
    npz: BinaryIO,
    strokes: TextIO,
    manifest: TextIO,
    include_unreviewed: bool = False,
    processes: int | None = None,
) -> ExportSummary:
    """export_steps run to its end (see there)."""
    steps = export_steps(
        drawings, npz=npz, strokes=strokes, manifest=manifest, include_unreviewed=include_unreviewed, processes=processes
    )
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def export_steps(
    drawings: QuerySet[Drawing],
    *,
    npz: BinaryIO,
    strokes: TextIO,
    manifest: TextIO,
    include_unreviewed: bool = False,
    processes: int | None = None,
) -> Generator[None, None, ExportSummary]:
    """Write the kept drawings of `drawings`: images (N, 28, 28) uint8 (255 = ink), labels (N,) uint8
    and ids (N,) int64 into `npz`; one JSON object per line into `strokes`; the manifest into `manifest`.

    Kept: labelled, not excluded, and reviewed, or with `include_unreviewed` also those labelled by the
    person alone (label_source "person-unreviewed" in the manifest).
    `processes`: how many spawned processes render the drawings waiting for their prediction (0 or 1:
    this one); by default one per core once RENDER_PROCESSES_FROM of them have come.

    A generator: it yields after every FETCH_ROWS rows written (a streamed zip hands on what is
    ready), and returns the summary."""
    labelled = Q(excluded=False, eff__isnull=False)
    kept_q = labelled if include_unreviewed else labelled & Q(reviewed_at__isnull=False)
    kept = drawings.alias(eff=EFFECTIVE_LABEL).filter(kept_q)
    kept = (
        kept.annotate(effective=EFFECTIVE_LABEL)
        # the stored JSON text as it is: no parse and re-dump of every point
        .annotate(strokes_json=Cast("strokes", TextField()))
        .order_by("pk")
        .values_list(*_COLUMNS)
    )
    labels, ids = bytearray(), array.array("q")
    person_unreviewed = 0
    writer = csv.writer(manifest)
    writer.writerow(MANIFEST_FIELDS)
    images = tempfile.TemporaryFile()  # rows of SIDE * SIDE bytes, in the rows' order
    # In a transaction: outside one, Django declares the server-side cursor WITH HOLD, and PostgreSQL
    # then computes and stores the whole result before the first row (seconds at a million rows).
    with images, _Renderer(images, processes=processes) as renderer, _no_jit(drawings.db), transaction.atomic(using=drawings.db):
        for index, row in enumerate(kept.iterator(chunk_size=FETCH_ROWS)):
            (
                pk,
                effective,
                label,
                review_label,
                predicted,
                confidence,
                uncertain,
                reason,
                model_name,
                created_at,
                reviewed_at,
                reviewed_by,
                client_id,
                width,
                height,
                brush,
                image28,
                strokes_json,
            ) = row
            source = "stored"
            if image28 is None:  # its place stays blank until the renderer fills it in
                images.write(_BLANK28)
                source = "rendered"
                renderer.add(index, strokes_json, width, height, brush)
            else:
                images.write(image28)
            whose = label_source(review_label, reviewed_at)
            person_unreviewed += whose == PERSON_UNREVIEWED
            labels.append(effective)
            ids.append(pk)
            # the stored strokes text goes in as it is, after the other keys
            head = json.dumps({"id": pk, "label": effective, "canvas": [width, height], "brush": brush})
            strokes.write(f'{head[:-1]}, "strokes": {strokes_json}}}\n')
            writer.writerow(
                (
                    index,
                    pk,
                    effective,
                    whose,
                    _blank(label),
                    _blank(review_label),
                    _blank(predicted),
                    _blank(confidence),
                    int(uncertain),
                    reason,
                    model_name,
                    created_at.isoformat(),
                    reviewed_at.isoformat() if reviewed_at else "",
                    reviewed_by or "",
                    source,
                    client_id,
                )
            )
            if index % FETCH_ROWS == FETCH_ROWS - 1:
                yield
        rendered = renderer.fill()
        write_npz(npz, images, labels=labels, ids=ids)
    yield
    # what was left out, counted once the rows are out (one pass over the selection's small columns)
    counts = drawings.alias(eff=EFFECTIVE_LABEL).aggregate(
        n_excluded=Count("pk", filter=Q(excluded=True)),
        n_unlabelled=Count("pk", filter=Q(excluded=False, eff__isnull=True)),
        n_unreviewed=Count("pk", filter=labelled & Q(reviewed_at__isnull=True)),
    )
    return ExportSummary(
        exported=len(ids),
        rendered=rendered,
        excluded=counts["n_excluded"],
        unlabelled=counts["n_unlabelled"],
        unreviewed=0 if include_unreviewed else counts["n_unreviewed"],
        person_unreviewed=person_unreviewed,
    )


@contextmanager
def _no_jit(alias: str) -> Iterator[None]:
    """PostgreSQL's JIT off for the export's session while it reads, then as it was: the export's one
    long query is estimated costly enough (a million rows) for PostgreSQL to compile it with
    optimisation and inlining first, seconds before the first row on a busy 2-core machine."""
    connection = connections[alias]
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('jit')")
        before = cursor.fetchone()[0]
        cursor.execute("SELECT set_config('jit', 'off', false)")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('jit', %s, false)", [before])


def write_npz(npz: BinaryIO, images: BinaryIO, *, labels: bytearray, ids: array.array) -> None:
    """What np.savez_compressed writes (images (N, 28, 28), labels (N,) uint8, ids (N,) int64), with
    the images copied in from their file a block at a time rather than held in memory."""
    n = len(ids)
    with zipfile.ZipFile(npz, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=NPZ_COMPRESSLEVEL, allowZip64=True) as zf:
        with zf.open("images.npy", "w", force_zip64=True) as entry:
            np.lib.format.write_array_header_1_0(entry, {"descr": "|u1", "fortran_order": False, "shape": (n, SIDE, SIDE)})
            images.seek(0)
            shutil.copyfileobj(images, entry, COPY_BUFFER)
        with zf.open("labels.npy", "w", force_zip64=True) as entry:
            np.lib.format.write_array(entry, np.frombuffer(labels, dtype=np.uint8), allow_pickle=False)
        with zf.open("ids.npy", "w", force_zip64=True) as entry:
            np.lib.format.write_array(
                entry, np.frombuffer(ids, dtype=np.int64) if n else np.zeros(0, np.int64), allow_pickle=False
            )


def render_processes(to_render: int) -> int:
    """How many processes render `to_render` drawings: one per core (0, none, on one core or for
    fewer than RENDER_PROCESSES_FROM drawings)."""
    if to_render < RENDER_PROCESSES_FROM:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 0 if cores < 2 else min(cores, RENDER_PROCESSES_MAX)


def _blank(value: object) -> object:
    return "" if value is None else value


_BLANK28 = bytes(SIDE * SIDE)


class _Renderer:
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
