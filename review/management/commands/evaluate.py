"""`python manage.py evaluate`: the model's figures (see digits.evaluation.evaluate, which does the work)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from digits.evaluation import evaluate as ev


class Command(BaseCommand):
    help = (
        "Evaluate a model: MNIST test and canvas-style test accuracy, per-class accuracy, confusion "
        "matrices (printed and saved as PNG), expected calibration error, inference speed, upload "
        "accuracy and refusals per variant, and UJI dev writers' pen digits (per class, ECE)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", default=None, help="model name (default: the current one)")
        parser.add_argument("--models-dir", type=Path, default=Path(settings.MODELS_DIR))
        parser.add_argument("--data-dir", type=Path, default=Path(settings.MNIST_DIR))
        parser.add_argument("--out", type=Path, default=ev.DEFAULT_OUT, help="where the JSON report and PNGs go")
        parser.add_argument("--write-card", action="store_true", help="record the figures in the model card")
        parser.add_argument("--speed-runs", type=int, default=500)
        parser.add_argument("--cache-dir", type=Path, default=ev.CACHE_DIR, help="canvas-style data cache")
        parser.add_argument("--uji-dir", type=Path, default=Path(settings.UJI_DIR), help="UJI pen digits (uji-digits-dev.json)")
        parser.add_argument(
            "--upload-count",
            type=int,
            default=ev.uploadset.DEFAULT_COUNT,
            help="validation digits per upload variant (0: no upload figures)",
        )
        parser.add_argument("--no-progress", dest="progress", action="store_false")

    def handle(self, *args: Any, **opts: Any) -> None:
        ev.evaluate(
            opts["model"],
            models_dir=opts["models_dir"],
            data_dir=opts["data_dir"],
            out=opts["out"],
            write_card=opts["write_card"],
            speed_runs=opts["speed_runs"],
            progress=opts["progress"],
            cache_dir=opts["cache_dir"],
            uji_dir=opts["uji_dir"],
            upload_count=opts["upload_count"],
            log=lambda line: self.stdout.write(line),
        )
