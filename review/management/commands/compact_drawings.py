"""`python manage.py compact_drawings [--batch 10000] [--pause 0.1]`: the drawings stored before
migration 0009 made narrow, a batch of ids at a time (PostgreSQL; nothing to do elsewhere).

Each batch is one short transaction (`UPDATE … SET strokes = strokes` over a range of ids: PostgreSQL
writes each row again, and toasts its bulky columns under the table's toast_tuple_target), so the
table stays in use: a row is locked for one batch's UPDATE at most. Each updated row leaves a dead
version behind until VACUUM (autovacuum, or `--vacuum` at the end): the table grows by the rows
updated until then. Run it again at any time: rows already narrow are written again, nothing else."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, transaction
from django.db.models import Max

from recognizer.models import Drawing


class Command(BaseCommand):
    help = "Move the bulky columns of drawings stored before migration 0009 out of the table's rows, in batches."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch", type=int, default=10_000, help="ids a transaction")
        parser.add_argument("--pause", type=float, default=0.1, help="seconds between batches (for the others)")
        parser.add_argument("--vacuum", action="store_true", help="VACUUM ANALYZE the table at the end")

    def handle(self, *args: Any, **opts: Any) -> None:
        if connection.vendor != "postgresql":
            self.stdout.write("nothing to do: the storage settings are PostgreSQL's")
            return
        top = Drawing.objects.aggregate(top=Max("pk"))["top"] or 0
        started, done, low = time.perf_counter(), 0, 0
        while low < top:
            high = low + opts["batch"]
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE recognizer_drawing SET strokes = strokes WHERE id > %s AND id <= %s AND png IS NOT NULL", [low, high]
                )
                done += cursor.rowcount
            low = high
            if opts["verbosity"] > 1:
                self.stdout.write(f"ids up to {high:,}: {done:,} rows in {time.perf_counter() - started:.0f} s")
            time.sleep(opts["pause"])
        if opts["vacuum"]:
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE recognizer_drawing")
        self.stdout.write(f"{done:,} drawings rewritten in {time.perf_counter() - started:.0f} s")
