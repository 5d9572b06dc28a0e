"""How a network is trained: the one :class:`Recipe` dataclass and the one table of its options
(``python -m digits.train`` takes them all). The fine-tune's :class:`FinetuneConfig` derives from it:
the same recipe with a fine-tune's defaults (fewer epochs, a lower rate, the base recipe's copies and
augmentation), a subset of the same options, and what a fine-tune adds (collected drawings, hold-out,
the starting model)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from digits.data.canvas_style import CACHE_DIR
from digits.data.splits import split_description
from digits.inference.network import DEFAULT_CHANNELS
from digits.paths import MNIST_DIR, MODELS_DIR
from digits.training.collected import HOLDOUT_BY

DEFAULT_DATA_DIR = MNIST_DIR
DEFAULT_OUT = MODELS_DIR
VERSION = "1.0.0"
DESCRIPTION = "Train DigitNet on MNIST and write the weights, the model card and ``current.json``."


@dataclass
class Recipe:
    data_dir: Path = DEFAULT_DATA_DIR
    out: Path = DEFAULT_OUT
    name: str = "cnn-v1"
    channels: tuple[int, int, int, int] = DEFAULT_CHANNELS  # DigitNet widths
    epochs: int = 20
    seed: int = 1
    val_fraction: float = 0.1
    batch_size: int = 128
    lr: float = 4e-3
    weight_decay: float = 5e-4
    label_smoothing: float = 0.05
    threads: int = 2
    resume: bool = False
    progress: bool = True
    version: str = VERSION
    canvas_fraction: float = 0.0  # share of each batch drawn from the canvas-style copies
    canvas_variants: int = 1  # canvas-style copies per training image (different random seeds)
    elastic: float = 0.0  # probability of an elastic distortion per image
    thickness: float = 0.0  # probability of a dilation or an erosion per image
    calibrate: bool = True
    cache_dir: Path | None = CACHE_DIR
    outliers: float = 0.0  # synthetic non-digits per batch, as a share of the batch (outlier exposure)
    outlier_weight: float = 0.5  # weight of their loss (cross-entropy to the uniform distribution)
    outlier_count: int = 6000
    set_current: bool = True  # point current.json at the new model
    teacher: str | None = None  # distil from this model (name of a card in teacher_dir)
    teacher_dir: Path = DEFAULT_OUT
    distill_weight: float = 0.7  # share of the loss that matches the teacher (the rest: the labels)
    distill_temperature: float = 3.0
    styles: float = 0.0  # a 1, 4, 5 or 7 replaced by a copy with a writing style MNIST lacks (stroke_styles)
    style_variants: int = 3
    uploads: float = 0.0  # a sample replaced by its upload rendition (digits.data.upload_renditions)
    upload_variants: int = 1
    distill_all: bool = False  # also match the teacher on styled copies and upload renditions (a teacher
    # trained with them); else those learn from their labels alone
    workers: int = 1  # processes that build the canvas-style copies, styled copies and upload renditions
    device: str = "cpu"  # where the network trains ("cuda" on a GPU machine); the data stays on the CPU
    init: str | None = None  # start from this trained model's weights (a card in teacher_dir), not at random
    swa: bool = False  # constant learning rate, and the model is the average of the weights after each epoch

    def split_description(self) -> str:
        """How the validation split was drawn, as recorded in the card (same text = same split)."""
        return split_description(self.seed, self.val_fraction)


def _channels(text: str) -> tuple[int, int, int, int]:
    widths = tuple(int(c) for c in text.split(","))
    if len(widths) != 4:
        raise argparse.ArgumentTypeError("four comma-separated widths, e.g. 32,64,96,128")
    return widths


# field -> (flags, keyword arguments of add_argument without the default, which comes from a Recipe)
OPTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "data_dir": (("--data-dir",), {"type": Path, "help": "MNIST IDX files"}),
    "out": (("--out",), {"type": Path, "help": "models directory"}),
    "name": (("--name",), {}),
    "channels": (("--channels",), {"type": _channels, "help": "DigitNet widths c1,c2,c3,c4"}),
    "epochs": (("--epochs",), {"type": int}),
    "seed": (("--seed",), {"type": int}),
    "val_fraction": (("--val-fraction",), {"type": float}),
    "batch_size": (("--batch-size",), {"type": int}),
    "lr": (("--lr",), {"type": float}),
    "weight_decay": (("--weight-decay",), {"type": float}),
    "label_smoothing": (("--label-smoothing",), {"type": float}),
    "threads": (("--threads",), {"type": int}),
    "resume": (("--resume",), {"action": "store_true", "help": "continue from <out>/.ckpt/<name>.pt"}),
    "progress": (("--no-progress",), {"action": "store_false"}),
    "version": (("--version",), {"help": "model version recorded in the card"}),
    "canvas_fraction": (
        ("--canvas-fraction",),
        {"type": float, "help": "probability that a training sample is replaced by a canvas-style copy"},
    ),
    "canvas_variants": (("--canvas-variants",), {"type": int, "help": "canvas-style copies per training image"}),
    "elastic": (("--elastic",), {"type": float, "help": "probability of elastic distortion"}),
    "thickness": (("--thickness",), {"type": float, "help": "probability of dilation/erosion"}),
    "calibrate": (("--no-calibrate",), {"action": "store_false"}),
    "cache_dir": (("--cache-dir",), {"type": Path, "help": "canvas-style data cache"}),
    "outliers": (
        ("--outliers",),
        {"type": float, "help": "synthetic non-digits per batch as a share of it (outlier exposure; 0 = off)"},
    ),
    "outlier_weight": (("--outlier-weight",), {"type": float}),
    "outlier_count": (("--outlier-count",), {"type": int}),
    "set_current": (
        ("--no-set-current",),
        {"action": "store_false", "help": "do not point current.json at the new model (compare it first)"},
    ),
    "teacher": (("--teacher",), {"help": "distil from this trained model (knowledge distillation)"}),
    "teacher_dir": (("--teacher-dir",), {"type": Path, "help": "where the teacher's card is"}),
    "distill_weight": (("--distill-weight",), {"type": float}),
    "distill_temperature": (("--distill-temperature",), {"type": float}),
    "styles": (
        ("--styles",),
        {"type": float, "help": "probability that a 1, 4, 5 or 7 is replaced by a styled copy (digits.data.stroke_styles)"},
    ),
    "style_variants": (("--style-variants",), {"type": int, "help": "styled copies per such digit"}),
    "uploads": (
        ("--uploads",),
        {
            "type": float,
            "help": "probability that a sample is replaced by an upload rendition (digits.data.upload_renditions)",
        },
    ),
    "upload_variants": (("--upload-variants",), {"type": int}),
    "distill_all": (
        ("--distill-all",),
        {
            "action": "store_true",
            "help": "match the teacher on styled copies and upload renditions too (a teacher trained with them)",
        },
    ),
    "workers": (("--workers",), {"type": int, "help": "processes that build the copies"}),
    "device": (("--device",), {"help": 'where the network trains: "cpu" or "cuda"'}),
    "init": (("--init",), {"help": "start from this trained model's weights (its card in --teacher-dir)"}),
    "swa": (
        ("--swa",),
        {"action": "store_true", "help": "constant learning rate; the model is the average of the weights after each epoch"},
    ),
}


def add_arguments(p: argparse.ArgumentParser, defaults: Recipe, fields: Iterable[str] | None = None) -> None:
    """The options of ``fields`` (default: all of the recipe's), with ``defaults``' values."""
    for field in OPTIONS if fields is None else fields:
        flags, kwargs = OPTIONS[field]
        p.add_argument(*flags, dest=field, default=getattr(defaults, field), **kwargs)


def parse_args(argv: list[str]) -> Recipe:
    p = argparse.ArgumentParser(prog="python -m digits.train", description=DESCRIPTION)
    add_arguments(p, Recipe())
    return Recipe(**vars(p.parse_args(argv)))


# --------------------------------------------------------------------------- the fine-tune


@dataclass
class FinetuneConfig(Recipe):
    """A fine-tune (``python -m digits.finetune``, ``manage.py retrain``): the recipe's fields with a
    fine-tune's defaults, and its own. The seed, validation split and widths are the starting model's;
    ``styles`` is applied to the MNIST images of an epoch (:mod:`digits.training.finetune`). Of the
    recipe's program fields it uses none: it writes into ``models_dir`` (never ``current.json``),
    finds its teacher there, always calibrates and starts from the base's weights."""

    name: str = ""  # the new model's name ("": <base>-ft<n>, the first free n)
    version: str = ""  # recorded in the card ("": <base's version>+<name>)
    epochs: int = 3
    lr: float = 1e-3  # peak of the one-cycle schedule (the base recipe's is 4e-3: this starts trained)
    progress: bool = False
    canvas_fraction: float = 0.7  # as the base recipe: MNIST samples replaced by a canvas-style copy
    outliers: float = 0.1  # synthetic non-digits per batch, as the base recipe (keeps refusals)
    outlier_count: int = 2000
    elastic: float = 0.5
    thickness: float = 0.3
    style_variants: int = 2  # styled copies per such MNIST training image
    data: Path | None = None  # the export's FILE.npz (None: MNIST and styled copies only, --styles)
    include_unreviewed: bool = False  # also the export's rows labelled by the person alone
    models_dir: Path = DEFAULT_OUT
    base: str | None = None  # the starting model (default: the current one)
    holdout_writers: tuple[str, ...] = ()
    holdout_fraction: float = 0.2
    holdout_by: str | None = None
    mnist_per_epoch: int = 8000  # MNIST training images per epoch, drawn afresh each epoch (0: all)
    collected_share: float = 0.15  # of every epoch's samples: collected drawings (repeated to reach it)
    canvas_val: bool = True  # also measure on the canvas-style validation set (cached)
    command: str = ""  # recorded in the card
    uji_dir: Path | None = None  # also measure the UJI dev writers (never trained on)
    note: str = ""  # recorded in the card (how the recipe was chosen, ...)


# the recipe's options a fine-tune takes (with styles: also those of styled copies and a teacher)
FINETUNE_OPTIONS = ("epochs", "lr", "canvas_fraction", "outliers", "outlier_count", "threads", "cache_dir")
STYLE_OPTIONS = ("canvas_variants", "styles", "style_variants")
TEACHER_OPTIONS = ("teacher", "distill_weight", "distill_temperature")


def _writers(text: str) -> tuple[str, ...]:
    names = tuple(w.strip() for w in text.split(",") if w.strip())
    if not names:
        raise argparse.ArgumentTypeError("a comma-separated list of writers, e.g. W01,W02")
    return names


def add_finetune_arguments(
    p: argparse.ArgumentParser, *, models_dir: Path = DEFAULT_OUT, data_dir: Path = DEFAULT_DATA_DIR, styles: bool = False
) -> None:
    """The options of ``python -m digits.finetune`` and ``manage.py retrain`` (one definition);
    ``styles``: also the styled copies' and a teacher's options, and ``--data`` optional
    (``python -m digits.finetune``)."""
    d = FinetuneConfig(models_dir=models_dir, data_dir=data_dir)
    p.add_argument("--data", type=Path, required=not styles, default=None, help="an export's FILE.npz (FILE.csv beside it)")
    p.add_argument(
        "--include-unreviewed",
        action="store_true",
        help="also train on the export's drawings labelled by the person alone, never reviewed",
    )
    p.add_argument("--models-dir", type=Path, default=models_dir)
    p.add_argument("--base", default=None, help="starting model (default: the current one)")
    p.add_argument("--name", default=None, help="the new model's name (default: <base>-ft<n>)")
    p.add_argument("--model-version", dest="version", default=None, help="recorded in the card")
    add_arguments(p, d, ["data_dir"])
    held = p.add_mutually_exclusive_group()
    held.add_argument("--holdout-writers", type=_writers, default=(), help="hold out these writers: W01,W02,...")
    held.add_argument(
        "--holdout-fraction", type=float, default=d.holdout_fraction, help="hold out about this share of the collected drawings"
    )
    p.add_argument(
        "--by",
        dest="holdout_by",
        choices=HOLDOUT_BY,
        default=None,
        help="with --holdout-fraction: whole writers, or the newest drawings "
        "(default: by writer when every drawing's writer is known)",
    )
    p.add_argument("--mnist-per-epoch", type=int, default=d.mnist_per_epoch, help="0: the whole training part")
    p.add_argument("--collected-share", type=float, default=d.collected_share)
    p.add_argument("--no-canvas-val", dest="canvas_val", action="store_false")
    p.add_argument("--progress", action="store_true")
    add_arguments(p, d, FINETUNE_OPTIONS)
    if styles:
        add_arguments(p, d, STYLE_OPTIONS)
        p.add_argument("--uji-dir", type=Path, default=None, help="also measure the UJI dev writers, never trained on")
        p.add_argument("--note", default="", help="recorded in the card's training section")
        add_arguments(p, d, TEACHER_OPTIONS)


def config_from(options: dict, command: str) -> FinetuneConfig:
    """The fine-tune ``options`` (parsed by :func:`add_finetune_arguments`) ask for; ``command`` goes into the card."""
    names = {f.name for f in fields(FinetuneConfig)}
    given = {k: v for k, v in options.items() if k in names and not (k in ("name", "version") and v is None)}
    return FinetuneConfig(**given, command=command)
