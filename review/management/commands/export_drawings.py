"""`python manage.py export_drawings --out FILE.npz [--include-unreviewed] [--since DATE]`: stored drawings
as training data (review.export does the work): FILE.npz, FILE.strokes.jsonl and FILE.csv.

Reviewed drawings only, unless --include-unreviewed: then the person's label alone counts too, and
the manifest's label_source says "person-unreviewed" for those rows. --reviewed-only, the default
now, is still accepted."""

from __future__ import annotations

import time
from datetime import datetime
from datetime import time as day_start
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from review.export import export_paths, export_to_files
from review.selectors import drawings_for_export


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
    help = (
        "Export stored drawings for training: 28x28 images, labels (the reviewer's, else the person's) and "
        "ids in FILE.npz, the raw strokes in FILE.strokes.jsonl, a manifest in FILE.csv (with each label's "
        "source). Excluded, unlabelled and (unless --include-unreviewed) unreviewed drawings are left out."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", type=Path, required=True, help="FILE.npz (the other two files go beside it)")
        which = parser.add_mutually_exclusive_group()
        which.add_argument(
            "--include-unreviewed",
            action="store_true",
            help="also drawings no reviewer has looked at, with the person's label alone "
            "(label_source person-unreviewed in the manifest)",
        )
        which.add_argument(
            "--reviewed-only",
            action="store_true",
            help="only drawings a reviewer has looked at (the default; kept for old scripts)",
        )
        parser.add_argument(
            "--since", type=parse_since, default=None, help="only drawings made on or after this date (or ISO date-time)"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["out"].suffix != ".npz":
            raise CommandError("--out must end in .npz")
        started = time.perf_counter()
        summary = export_to_files(
            drawings_for_export(since=opts["since"]), opts["out"], include_unreviewed=opts["include_unreviewed"]
        )
        if opts["include_unreviewed"]:
            self.stdout.write(
                "including unreviewed drawings: the person's label alone is used for them "
                "(label_source person-unreviewed in the manifest)"
            )
        self.stdout.write(f"{summary.describe()} in {time.perf_counter() - started:.2f} s")
        for path in export_paths(opts["out"]):
            self.stdout.write(f"  {path}")
