"""Stored drawings out as training data: the 28x28 images, labels and ids (one .npz), the raw
strokes (JSON lines) and a CSV manifest, row for row in the same order (by id).

The label is the effective one (the reviewer's, else the person's). Excluded drawings and drawings
nobody labelled are left out, and counted. A drawing still waiting for its prediction has no stored
28x28 image yet: it is rendered here from its strokes with the same function the workers use
(digits.render.strokes_to_mnist), so the export never waits for a worker.
"""
from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, TextIO

import numpy as np
from django.db.models import Count, Q, QuerySet, TextField
from django.db.models.functions import Cast

from recognizer.models import EFFECTIVE_LABEL, Drawing

SIDE = 28
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


def export_to_files(drawings: QuerySet[Drawing], out: Path) -> ExportSummary:
    npz_path, strokes_path, csv_path = export_paths(out)
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    with (npz_path.open("wb") as npz, strokes_path.open("w", encoding="utf-8") as strokes,
          csv_path.open("w", encoding="utf-8", newline="") as manifest):
        return export_write(drawings, npz=npz, strokes=strokes, manifest=manifest)


def export_to_zip(drawings: QuerySet[Drawing]) -> tuple[bytes, ExportSummary]:
    """The same three files in one zip (the admin's download)."""
    npz, strokes, manifest = io.BytesIO(), io.StringIO(), io.StringIO()
    summary = export_write(drawings, npz=npz, strokes=strokes, manifest=manifest)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(ZIP_NAMES[0], npz.getvalue(), compress_type=zipfile.ZIP_STORED)  # already compressed
        zf.writestr(ZIP_NAMES[1], strokes.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr(ZIP_NAMES[2], manifest.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue(), summary


def export_write(drawings: QuerySet[Drawing], *, npz: BinaryIO, strokes: TextIO, manifest: TextIO) -> ExportSummary:
    """Write the kept drawings of `drawings`: images (N, 28, 28) uint8 (255 = ink), labels (N,) uint8
    and ids (N,) int64 into `npz`; one JSON object per line into `strokes`; the manifest into `manifest`."""
    counts = drawings.alias(eff=EFFECTIVE_LABEL).aggregate(
        n_excluded=Count("pk", filter=Q(excluded=True)),
        n_unlabelled=Count("pk", filter=Q(excluded=False, eff__isnull=True)),
    )
    kept = (drawings.filter(excluded=False).annotate(effective=EFFECTIVE_LABEL).filter(effective__isnull=False)
            # the stored JSON text as it is: no parse and re-dump of every point
            .annotate(strokes_json=Cast("strokes", TextField()))
            .order_by("pk").values_list(*_COLUMNS))
    images, labels, ids = bytearray(), bytearray(), []
    writer = csv.writer(manifest)
    writer.writerow(MANIFEST_FIELDS)
    rendered = 0
    for index, row in enumerate(kept.iterator(chunk_size=2000)):
        (pk, effective, label, review_label, predicted, confidence, uncertain, reason, model_name, created_at,
         reviewed_at, reviewed_by, client_id, width, height, brush, image28, strokes_json) = row
        source = "stored"
        if image28 is None:
            image28, source = _render28(json.loads(strokes_json), (width, height), brush), "rendered"
            rendered += 1
        images += image28
        labels.append(effective)
        ids.append(pk)
        # the stored strokes text goes in as it is, after the other keys
        head = json.dumps({"id": pk, "label": effective, "canvas": [width, height], "brush": brush})
        strokes.write(f'{head[:-1]}, "strokes": {strokes_json}}}\n')
        writer.writerow((
            index, pk, effective, _blank(label), _blank(review_label), _blank(predicted), _blank(confidence),
            int(uncertain), reason, model_name, created_at.isoformat(), reviewed_at.isoformat() if reviewed_at else "",
            reviewed_by or "", source, client_id,
        ))
    np.savez_compressed(
        npz,
        images=np.frombuffer(bytes(images), dtype=np.uint8).reshape(-1, SIDE, SIDE),
        labels=np.frombuffer(bytes(labels), dtype=np.uint8),
        ids=np.array(ids, dtype=np.int64),
    )
    return ExportSummary(exported=len(ids), rendered=rendered, excluded=counts["n_excluded"],
                         unlabelled=counts["n_unlabelled"])


def _blank(value: object) -> object:
    return "" if value is None else value


def _render28(strokes: list, canvas: tuple[float, float], brush: float) -> bytes:
    """The workers' rendering of a drawing whose prediction is still pending (no ink: all zeros, as
    the workers store it)."""
    # Imported here: the web processes load the admin (which exports) but must not load the ML core.
    from digits.render import strokes_to_mnist

    image = strokes_to_mnist(strokes, canvas, brush)
    if image is None:
        return bytes(SIDE * SIDE)
    # the same rounding as worker.pipeline.to_bytes28
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8).tobytes()
