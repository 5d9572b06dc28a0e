"""`python manage.py export_drawings --out FILE.npz [--reviewed-only] [--since DATE]`: stored drawings as
training data (recognizer.export does the work): FILE.npz, FILE.strokes.jsonl and FILE.csv."""
from __future__ import annotations

import time
from datetime import datetime
from datetime import time as day_start
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from recognizer.export import drawings_for_export, export_paths, export_to_files


def parse_since(text: str) -> datetime:
    """A date (midnight, in the server's time zone) or an ISO date-time."""
    moment = parse_datetime(text)
    if moment is None:
        day = parse_date(text)
        if day is None:
            raise CommandError(f"--since {text!r}: expected a date (2026-11-25) or an ISO date-time")
        moment = datetime.combine(day, day_start())
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


class Command(BaseCommand):
    help = ("Export stored drawings for training: 28x28 images, labels (the reviewer's, else the person's) and "
            "ids in FILE.npz, the raw strokes in FILE.strokes.jsonl, a manifest in FILE.csv. Excluded and "
            "unlabelled drawings are left out.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", type=Path, required=True, help="FILE.npz (the other two files go beside it)")
        parser.add_argument("--reviewed-only", action="store_true", help="only drawings a reviewer has looked at")
        parser.add_argument("--since", type=parse_since, default=None,
                            help="only drawings made on or after this date (or ISO date-time)")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["out"].suffix != ".npz":
            raise CommandError("--out must end in .npz")
        started = time.perf_counter()
        summary = export_to_files(drawings_for_export(reviewed_only=opts["reviewed_only"], since=opts["since"]),
                                  opts["out"])
        self.stdout.write(f"{summary.describe()} in {time.perf_counter() - started:.2f} s")
        for path in export_paths(opts["out"]):
            self.stdout.write(f"  {path}")
