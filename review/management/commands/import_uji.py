"""`python manage.py import_uji [--path DIR_OR_FILE] [--no-queue]`: the UJI dev writers' pen digits as
stored drawings, to seed the review loop with real drawings (import -> export -> retrain).

Each digit is put on the page's canvas as digits.data.uji does (fitted with its aspect kept, 0.1 px, the
page's brush) and stored through the submit's own write path (`drawing_store`), so it is the row a
person drawing it on the page would have made. The client id names the writer
(`uji-W01-<label>-<sample>`, read back by digits.training.finetune for leave-writers-out), and the set's label is
stored as a reviewer's label. A second run adds nothing (the row is found again by its client id and
content). New rows' predictions are queued after the commit, as a submit's are, or left for the
workers' sweep with --no-queue.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from contract.jobs import MAX_BATCH
from digits.data import uji
from recognizer.jobs import enqueue_fill
from recognizer.models import Drawing
from recognizer.services import drawing_store, enqueue_quietly

Enqueue = Callable[[list[int]], None]


@dataclass(frozen=True)
class ImportSummary:
    created: int
    existing: int
    queued: int  # rows whose prediction was queued (the others wait for the workers' sweep)

    def describe(self) -> str:
        return f"{self.created} drawings imported, {self.existing} already there; {self.queued} predictions queued"


def uji_client_id(digit: uji.PenDigit) -> str:
    """One id per digit: the sample name repeats across the ten digits of a writer."""
    return f"uji-{digit.writer}-{digit.label}-{digit.sample}"


def uji_import(*, digits: Sequence[uji.PenDigit], enqueue: Enqueue | None) -> ImportSummary:
    """Store ``digits`` as drawings (one transaction); queue the new rows' predictions after the commit,
    in the workers' batch size, when ``enqueue`` is given."""
    canvas, brush = uji.CANVAS, uji.BRUSH
    by_label: dict[int, list[int]] = {}
    with transaction.atomic():
        for digit in digits:
            row, new = drawing_store(
                client_id=uji_client_id(digit),
                strokes=uji.fit_to_canvas(digit.strokes, canvas),
                canvas=canvas,
                brush=brush,
                label=None,
            )
            if new:
                by_label.setdefault(digit.label, []).append(row.pk)
        # the data set's label is what a reviewer would say: stored as the reviewer's label
        now = timezone.now()
        for label, pks in by_label.items():
            Drawing.objects.filter(pk__in=pks).update(review_label=label, reviewed_at=now)
        created = sorted(pk for pks in by_label.values() for pk in pks)
        if enqueue is not None:
            for i in range(0, len(created), MAX_BATCH):
                chunk = created[i : i + MAX_BATCH]
                transaction.on_commit(lambda chunk=chunk: enqueue_quietly(enqueue, chunk))
    return ImportSummary(
        created=len(created), existing=len(digits) - len(created), queued=len(created) if enqueue is not None else 0
    )


def uji_load(path: Path) -> list[uji.PenDigit]:
    """The dev digits from a directory holding uji-digits-dev.json, or from the file itself."""
    path = Path(path)
    if path.is_file() and path.name != uji.DEV_FILE:
        raise ValueError(f"{path}: expected a directory or {uji.DEV_FILE}")
    return uji.load_dev(path.parent if path.is_file() else path)


class Command(BaseCommand):
    help = (
        "Import the UJI dev writers' pen digits as stored drawings (fitted to the page's canvas, the page's "
        "brush, the writer in the client id, the set's label as the reviewer's); a second run adds nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--path",
            type=Path,
            default=Path(settings.UJI_DIR),
            help=f"directory with {uji.DEV_FILE}, or the file (default: UJI_DIR)",
        )
        parser.add_argument(
            "--no-queue", dest="queue", action="store_false", help="do not queue predictions: the workers' sweep fills them in"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            digits = uji_load(opts["path"])
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        summary = uji_import(digits=digits, enqueue=enqueue_fill if opts["queue"] else None)
        self.stdout.write(f"{len(digits)} UJI digits of {len(uji.writers(digits))} writers: {summary.describe()}")
