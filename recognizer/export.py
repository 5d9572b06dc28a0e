"""Stored drawings out as training data: the 28x28 images, labels and ids (one .npz), the raw
strokes (JSON lines) and a CSV manifest, row for row in the same order (by id).

The label is the effective one (the reviewer's, else the person's). Excluded drawings and drawings
nobody labelled are left out, and counted. A drawing still waiting for its prediction has no stored
28x28 image yet: it is rendered here from its strokes with the same function the workers use
(digits.render.strokes_to_mnist), so the export never waits for a worker. Many of them (all 10,000
of a large export, say) are rendered by spawned processes, one per core, in chunks, while this
process goes on reading and writing the rows; the files are the same either way.
"""
from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import zipfile
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self, TextIO

import numpy as np
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
MANIFEST_FIELDS = (
    "index", "id", "label", "person_label", "review_label", "predicted_digit", "confidence", "uncertain",
    "reason", "model_name", "created_at", "reviewed_at", "reviewed_by", "image", "client_id",
)
ZIP_NAMES = ("drawings.npz", "drawings.strokes.jsonl", "drawings.csv")

_COLUMNS = (
    "pk", "effective", "label", "review_label", "predicted_digit", "confidence", "uncertain", "reason", "model_name",
    "created_at", "reviewed_at", "reviewed_by__username", "client_id", "canvas_width", "canvas_height", "brush",
    "image28", "strokes_json",
)


@dataclass(frozen=True)
class ExportSummary:
    exported: int
    rendered: int  # of those, images rendered from strokes here (prediction still pending)
    excluded: int  # left out: excluded from training
    unlabelled: int  # left out: no label from the person or a reviewer

    def describe(self) -> str:
        rendered = f" ({self.rendered} rendered from their strokes, prediction pending)" if self.rendered else ""
        return (f"{self.exported} drawings exported{rendered}; left out: {self.excluded} excluded, "
                f"{self.unlabelled} unlabelled")


def drawings_for_export(*, reviewed_only: bool = False, since: datetime | None = None) -> QuerySet[Drawing]:
    """The drawings an export looks at (excluded and unlabelled ones are dropped by the writer, which
    counts them)."""
    qs = Drawing.objects.all()
    if reviewed_only:
        qs = qs.filter(reviewed_at__isnull=False)
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    return qs


def export_paths(out: Path) -> tuple[Path, Path, Path]:
    """FILE.npz -> (FILE.npz, FILE.strokes.jsonl, FILE.csv)."""
    out = Path(out)
    return out, out.with_suffix(".strokes.jsonl"), out.with_suffix(".csv")


def export_to_files(drawings: QuerySet[Drawing], out: Path, *, processes: int | None = None) -> ExportSummary:
    npz_path, strokes_path, csv_path = export_paths(out)
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    with (npz_path.open("wb") as npz, strokes_path.open("w", encoding="utf-8") as strokes,
          csv_path.open("w", encoding="utf-8", newline="") as manifest):
        return export_write(drawings, npz=npz, strokes=strokes, manifest=manifest, processes=processes)


def export_to_zip(drawings: QuerySet[Drawing], *, processes: int | None = None) -> tuple[bytes, ExportSummary]:
    """The same three files in one zip (the admin's download)."""
    npz, strokes, manifest = io.BytesIO(), io.StringIO(), io.StringIO()
    summary = export_write(drawings, npz=npz, strokes=strokes, manifest=manifest, processes=processes)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(ZIP_NAMES[0], npz.getvalue(), compress_type=zipfile.ZIP_STORED)  # already compressed
        zf.writestr(ZIP_NAMES[1], strokes.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr(ZIP_NAMES[2], manifest.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue(), summary


def export_write(drawings: QuerySet[Drawing], *, npz: BinaryIO, strokes: TextIO, manifest: TextIO,
                 processes: int | None = None) -> ExportSummary:
    """Write the kept drawings of `drawings`: images (N, 28, 28) uint8 (255 = ink), labels (N,) uint8
    and ids (N,) int64 into `npz`; one JSON object per line into `strokes`; the manifest into `manifest`.

    `processes`: how many spawned processes render the drawings waiting for their prediction (0 or 1:
    this one); by default one per core when there are RENDER_PROCESSES_FROM of them or more."""
    counts = drawings.alias(eff=EFFECTIVE_LABEL).aggregate(
        n_excluded=Count("pk", filter=Q(excluded=True)),
        n_unlabelled=Count("pk", filter=Q(excluded=False, eff__isnull=True)),
        n_to_render=Count("pk", filter=Q(excluded=False, eff__isnull=False, image28__isnull=True)),
    )
    kept = (drawings.filter(excluded=False).annotate(effective=EFFECTIVE_LABEL).filter(effective__isnull=False)
            # the stored JSON text as it is: no parse and re-dump of every point
            .annotate(strokes_json=Cast("strokes", TextField()))
            .order_by("pk").values_list(*_COLUMNS))
    images, labels, ids = bytearray(), bytearray(), []
    writer = csv.writer(manifest)
    writer.writerow(MANIFEST_FIELDS)
    if processes is None:
        processes = render_processes(counts["n_to_render"])
    with _Renderer(processes=processes) as renderer:
        for index, row in enumerate(kept.iterator(chunk_size=2000)):
            (pk, effective, label, review_label, predicted, confidence, uncertain, reason, model_name, created_at,
             reviewed_at, reviewed_by, client_id, width, height, brush, image28, strokes_json) = row
            source = "stored"
            if image28 is None:  # its place stays blank until the renderer fills it in
                image28, source = _BLANK28, "rendered"
                renderer.add(index, strokes_json, width, height, brush)
            images += image28
            labels.append(effective)
            ids.append(pk)
            # the stored strokes text goes in as it is, after the other keys
            head = json.dumps({"id": pk, "label": effective, "canvas": [width, height], "brush": brush})
            strokes.write(f'{head[:-1]}, "strokes": {strokes_json}}}\n')
            writer.writerow((
                index, pk, effective, _blank(label), _blank(review_label), _blank(predicted), _blank(confidence),
                int(uncertain), reason, model_name, created_at.isoformat(),
                reviewed_at.isoformat() if reviewed_at else "", reviewed_by or "", source, client_id,
            ))
        rendered = renderer.fill(images)
    np.savez_compressed(
        npz,
        images=np.frombuffer(bytes(images), dtype=np.uint8).reshape(-1, SIDE, SIDE),
        labels=np.frombuffer(bytes(labels), dtype=np.uint8),
        ids=np.array(ids, dtype=np.int64),
    )
    return ExportSummary(exported=len(ids), rendered=rendered, excluded=counts["n_excluded"],
                         unlabelled=counts["n_unlabelled"])


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
    JSON text by digits.render.strokes_json_to_mnist_bytes (the workers' rendering and rounding; no ink:
    all zeros, as the workers store it), RENDER_CHUNK drawings at a time: in this process, or by
    `processes` spawned ones while this one goes on (here again should those processes fail to start
    or die). Spawned, never forked: the admin's download runs in a web process (threads, an event
    loop, open sockets)."""

    def __init__(self, *, processes: int) -> None:
        # Imported here: the web processes load the admin (which exports) but must not load the ML core.
        from digits.render import strokes_json_to_mnist_bytes

        self._render = strokes_json_to_mnist_bytes
        self._pool = (ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))
                      if processes > 1 else None)
        self._chunk: list[tuple[str, float, float, float]] = []
        self._indexes: list[int] = []
        # each chunk: its rows, its drawings, and its images (bytes) or their future
        self._chunks: list[tuple[list[int], list[tuple[str, float, float, float]], bytes | Future[bytes]]] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def add(self, index: int, strokes_json: str, width: float, height: float, brush: float) -> None:
        """The drawing of row `index` (its image is filled in by `fill`)."""
        self._chunk.append((strokes_json, width, height, brush))
        self._indexes.append(index)
        if len(self._chunk) >= RENDER_CHUNK:
            self._send()

    def fill(self, images: bytearray) -> int:
        """Put every added drawing's image in its row's place in `images` (rows of SIDE * SIDE bytes);
        returns how many."""
        self._send()
        n = SIDE * SIDE
        for indexes, drawings, chunk in self._chunks:
            if isinstance(chunk, bytes):
                data = chunk
            else:
                try:
                    data = chunk.result()
                except BrokenProcessPool:
                    data = self._render(drawings)
            for k, index in enumerate(indexes):
                images[index * n:(index + 1) * n] = data[k * n:(k + 1) * n]
        return sum(len(indexes) for indexes, _, _ in self._chunks)

    def _send(self) -> None:
        if not self._chunk:
            return
        chunk: bytes | Future[bytes] | None = None
        if self._pool is not None:
            try:
                chunk = self._pool.submit(self._render, self._chunk)
            except (BrokenProcessPool, OSError):  # no process could be started
                self._pool.shutdown(wait=False, cancel_futures=False)
                self._pool = None
        if chunk is None:
            chunk = self._render(self._chunk)
        self._chunks.append((self._indexes, self._chunk, chunk))
        self._chunk, self._indexes = [], []
