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
worker; many of them (all 10,000 of a large export, say) by spawned processes (review.export_render).

Memory stays flat in the number of rows: rows are fetched FETCH_ROWS at a time, the strokes and the
manifest are written out row by row, the images go to a temporary file as they come (784 bytes a row,
put into the npz a block at a time at the end), only the labels and ids are kept (9 bytes a row: 9 MB
at a million), and only a few chunks of drawings being rendered are held at a time. The counts of
what was left out are taken after the rows are written, so the first rows go out at once.

This module writes the three files (`export_to_files`: the command's); the admin's download streams
them as one zip as it is made (review.export_zip, the same code path). Nothing of the export's size is
held in memory at any point. Which drawings an export looks at: review.selectors.drawings_for_export.
"""

from __future__ import annotations

import array
import csv
import json
import shutil
import tempfile
import zipfile
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, TextIO

import numpy as np
from django.db import connections, transaction
from django.db.models import Count, Q, QuerySet, TextField
from django.db.models.functions import Cast

from recognizer.models import EFFECTIVE_LABEL, Drawing
from review.export_render import SIDE, Renderer

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
# The npz's members are deflated at this level (1: several times faster than zlib's default 6, and
# nearly as small on 28x28 digits).
NPZ_COMPRESSLEVEL = 1


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
    this one); by default one per core once export_render.RENDER_PROCESSES_FROM of them have come.

    A generator: it yields after every FETCH_ROWS rows written (a streamed zip hands on what is
    ready), and returns the summary."""
    labelled = Q(excluded=False, eff__isnull=False)
    kept_q = labelled if include_unreviewed else labelled & Q(reviewed_at__isnull=False)
    kept = drawings.alias(eff=EFFECTIVE_LABEL).filter(kept_q)
    rows = (
        kept.annotate(effective=EFFECTIVE_LABEL)
        # the stored JSON text as it is: no parse and re-dump of every point
        .annotate(strokes_json=Cast("strokes", TextField()))
        .order_by("pk")
        # the columns named here (not from a list) so that mypy's django plugin types the rows
        .values_list(
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
    )
    labels, ids = bytearray(), array.array("q")
    person_unreviewed = 0
    writer = csv.writer(manifest)
    writer.writerow(MANIFEST_FIELDS)
    # images: rows of SIDE * SIDE bytes, in the rows' order. In a transaction: outside one, Django declares the
    # server-side cursor WITH HOLD, and PostgreSQL then computes and stores the whole result before the first row
    # (seconds at a million rows).
    with (
        tempfile.TemporaryFile() as images,
        Renderer(images, processes=processes) as renderer,
        _no_jit(drawings.db),
        transaction.atomic(using=drawings.db),
    ):
        for index, row in enumerate(rows.iterator(chunk_size=FETCH_ROWS)):
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


def _blank(value: object) -> object:
    return "" if value is None else value


_BLANK28 = bytes(SIDE * SIDE)
