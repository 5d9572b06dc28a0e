"""`python manage.py retrain --data FILE.npz [--holdout-writers W01,... | --holdout-fraction 0.2 --by time]
[--epochs N] [--name NAME] [--include-unreviewed]`: fine-tune the current model on MNIST plus an export of
collected drawings and write a new model version beside it (digits.training.finetune does the work). It never
makes the new model current: compare the two sets of figures in its card first. Only the export's
reviewed drawings are trained on unless --include-unreviewed (the card counts those left out)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from digits.training import finetune


class Command(BaseCommand):
    help = (
        "Fine-tune from the current model on the MNIST training part plus exported reviewed drawings (a share held "
        "out: whole writers where known, else the newest), and write a new model version whose card compares "
        "it with the starting model. current.json is left as it is."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        finetune.add_arguments(parser, models_dir=Path(settings.MODELS_DIR), data_dir=Path(settings.MNIST_DIR))

    def handle(self, *args: Any, **opts: Any) -> None:
        if not Path(opts["data"]).exists():
            raise CommandError(f"--data {opts['data']}: no such export")
        if sys.argv[1:2] == ["retrain"]:
            command = shlex.join(["python", "manage.py", "retrain", *sys.argv[2:]])
        else:  # call_command: the options as given
            given = {k: str(v) for k, v in opts.items() if k in finetune.FinetuneConfig.__dataclass_fields__}
            command = f"call_command('retrain', **{given})"
        try:
            card = finetune.finetune(finetune.config_from(opts, command), log=self.stdout.write)
        except (ValueError, FileExistsError) as exc:
            raise CommandError(str(exc)) from exc
        before, after = card["comparison"]["before"], card["comparison"]["after"]
        self.stdout.write(
            f"held-out collected drawings: {before['model']} "
            f"{before['held_out_collected']['accuracy']:.2%} -> {after['model']} "
            f"{after['held_out_collected']['accuracy']:.2%}; MNIST validation "
            f"{before['val_accuracy']:.2%} -> {after['val_accuracy']:.2%}"
        )
