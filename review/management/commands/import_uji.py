"""`python manage.py import_uji [--path DIR_OR_FILE] [--no-queue]`: the UJI dev writers' pen digits as
stored drawings, to seed the review loop with real drawings (import -> export -> retrain).

Each digit is put on the page's canvas as digits.data.uji does (fitted with its aspect kept, 0.1 px, the
page's brush) and stored through the submit's own write path (`drawing_store`), so it is the row a
person drawing it on the page would have made. The client id names the writer
(`uji-W01-<label>-<sample>`, read back by digits.training.finetune for leave-writers-out), and the set's label is
stored as a reviewer's label. A second run adds nothing (the row is found again by its client id and
content). New rows' predictions are queued after the commit, as a submit's are, or left for the
workers' sweep with --no-queue. The work is review.services.uji_import's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from digits.data import uji
from recognizer.job_client import publish_fill
from review.selectors import uji_load
from review.services import uji_import


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
        summary = uji_import(digits=digits, enqueue=publish_fill if opts["queue"] else None)
        self.stdout.write(f"{len(digits)} UJI digits of {len(uji.writers(digits))} writers: {summary.describe()}")
