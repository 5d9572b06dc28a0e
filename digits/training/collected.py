"""Collected drawings for a fine-tune: an export of ``manage.py export_drawings`` (``FILE.npz`` and
its manifest ``FILE.csv``) read row for row, and the share of it held out (never trained on): whole
writers where the writers are known (an imported UJI drawing's client id names its writer,
``uji-W01-...``), else the newest drawings.

Only reviewed drawings are loaded unless asked: a row whose label is the person's alone (the
manifest's ``label_source`` "person-unreviewed", or an empty ``reviewed_at`` in an older manifest) is
left out, and counted; anyone can draw on the page and say what digit it is. (A manifest with neither
column, not written by export_drawings, is taken as it is.)
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WRITER_ID = re.compile(r"^uji-(W\d+)-")  # import_uji's client ids: uji-<writer>-<label>-<sample>
HOLDOUT_BY = ("writer", "time")


@dataclass(frozen=True)
class Collected:
    """An export, row for row: images uint8 (N, 28, 28), labels and ids, and from the manifest each
    drawing's writer (None where unknown) and creation time (ISO text, sorts in time order)."""

    path: Path
    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    writers: tuple[str | None, ...]
    created: tuple[str, ...]
    unreviewed_left_out: int = 0  # rows of the export with the person's label alone, not loaded
    unreviewed: int = 0  # of those loaded, rows with the person's label alone (--include-unreviewed)

    def __len__(self) -> int:
        return len(self.ids)


def writer_of(client_id: str) -> str | None:
    """The writer a client id names (imported sets), or None (the page's drawings name nobody)."""
    m = WRITER_ID.match(client_id)
    return m.group(1) if m else None


def unreviewed_row(row: dict[str, str]) -> bool:
    """Whether a manifest row's label is the person's alone, never reviewed (review.export's
    label_source; before that column, an empty reviewed_at; a manifest with neither says nothing)."""
    if "label_source" in row:
        return row["label_source"] == "person-unreviewed"
    if "reviewed_at" in row:
        return not row["reviewed_at"]
    return False


def load_collected(path: Path, *, include_unreviewed: bool = False) -> Collected:
    """The export's rows; without `include_unreviewed`, only those whose label a reviewer gave or let stand."""
    path = Path(path)
    with np.load(path) as npz:
        images, labels, ids = npz["images"], npz["labels"].astype(np.int64), npz["ids"].astype(np.int64)
    manifest = path.with_suffix(".csv")
    with manifest.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if [int(r["id"]) for r in rows] != ids.tolist():
        raise ValueError(f"{manifest} does not list the drawings of {path} row for row")
    if images.shape != (len(ids), 28, 28) or len(labels) != len(ids):
        raise ValueError(f"{path}: images {images.shape}, {len(labels)} labels, {len(ids)} ids")
    unreviewed = np.array([unreviewed_row(r) for r in rows], dtype=bool)
    left_out = 0
    if not include_unreviewed and unreviewed.any():
        keep = ~unreviewed
        left_out = int(unreviewed.sum())
        images, labels, ids = images[keep], labels[keep], ids[keep]
        rows = [r for r, k in zip(rows, keep, strict=True) if k]
        unreviewed = unreviewed[keep]
    return Collected(
        path,
        images,
        labels,
        ids,
        tuple(writer_of(r["client_id"]) for r in rows),
        tuple(r["created_at"] for r in rows),
        unreviewed_left_out=left_out,
        unreviewed=int(unreviewed.sum()),
    )


@dataclass(frozen=True)
class Holdout:
    """Row indices of the collected drawings: trained on, and held out (never trained on)."""

    train: np.ndarray
    held_out: np.ndarray
    by: str  # "writer" or "time"
    writers: tuple[str, ...] = ()  # the held-out writers (by writer)

    def describe(self) -> str:
        if self.by == "writer":
            return f"writers {', '.join(self.writers)} held out"
        return "the newest drawings held out"


def holdout_writers(collected: Collected, writers: Sequence[str]) -> Holdout:
    """Every drawing of ``writers`` held out; all others (unknown writers too) trained on."""
    known = {w for w in collected.writers if w}
    missing = sorted(set(writers) - known)
    if missing:
        raise ValueError(f"no drawings of writers {missing} in {collected.path}")
    out = np.array([w in set(writers) for w in collected.writers], dtype=bool)
    return Holdout(np.flatnonzero(~out), np.flatnonzero(out), "writer", tuple(sorted(set(writers))))


def holdout_share(collected: Collected, fraction: float, by: str | None = None, seed: int = 0) -> Holdout:
    """About ``fraction`` of the drawings held out: whole writers, ``seed``-chosen (by writer), or the
    newest ones (by time). ``by=None``: by writer when every drawing's writer is known."""
    if not 0 < fraction < 1:
        raise ValueError("the held-out fraction must be between 0 and 1")
    if by is None:
        by = "writer" if len(collected) and all(collected.writers) else "time"
    if by not in HOLDOUT_BY:
        raise ValueError(f"hold out by one of {HOLDOUT_BY}, not {by!r}")
    if by == "writer":
        names = sorted({w for w in collected.writers if w})
        if len(names) < 2:
            raise ValueError("holding out by writer needs drawings of at least two known writers")
        k = min(len(names) - 1, max(1, round(fraction * len(names))))
        chosen = [names[i] for i in np.random.default_rng(seed).permutation(len(names))[:k]]
        return holdout_writers(collected, chosen)
    order = sorted(range(len(collected)), key=lambda i: (collected.created[i], int(collected.ids[i])))
    n = min(len(order) - 1, max(1, math.ceil(fraction * len(order))))
    return Holdout(np.sort(np.array(order[:-n], dtype=np.int64)), np.sort(np.array(order[-n:], dtype=np.int64)), "time")
