"""`python manage.py compact_drawings [--batch 10000] [--pause 0.1]`: the drawings stored before
migration 0009 made narrow, a batch of ids at a time (PostgreSQL; nothing to do elsewhere).

Each batch is one short transaction (`UPDATE … SET strokes = strokes` over a range of ids: PostgreSQL
writes each row again, and toasts its bulky columns under the table's toast_tuple_target), so the
table stays in use: a row is locked for one batch's UPDATE at most. Each updated row leaves a dead
version behind until VACUUM (autovacuum, or `--vacuum` at the end): the table grows by the rows
updated until then. Run it again at any time: rows already narrow are written again, nothing else.
The work is review.services.drawings_compact's."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from review.services import drawings_compact


class Command(BaseCommand):
    help = "Move the bulky columns of drawings stored before migration 0009 out of the table's rows, in batches."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch", type=int, default=10_000, help="ids a transaction")
        parser.add_argument("--pause", type=float, default=0.1, help="seconds between batches (for the others)")
        parser.add_argument("--vacuum", action="store_true", help="VACUUM ANALYZE the table at the end")

    def handle(self, *args: Any, **opts: Any) -> None:
        started = time.perf_counter()

        def progress(high: int, done: int) -> None:
            if opts["verbosity"] > 1:
                self.stdout.write(f"ids up to {high:,}: {done:,} rows in {time.perf_counter() - started:.0f} s")

        done = drawings_compact(batch=opts["batch"], pause=opts["pause"], vacuum=opts["vacuum"], progress=progress)
        if done is None:
            self.stdout.write("nothing to do: the storage settings are PostgreSQL's")
            return
        self.stdout.write(f"{done:,} drawings rewritten in {time.perf_counter() - started:.0f} s")
