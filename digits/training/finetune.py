"""Fine-tune a trained model on the MNIST training part plus collected drawings, and compare.

    python -m digits.finetune --data export.npz --holdout-writers W01,W02,W03,W04 --epochs 3
    python -m digits.finetune --data export.npz --holdout-fraction 0.2 --by time
    python -m digits.finetune --styles 0.4 --uji-dir ../shared/data/uji-pen --name cnn-v7 ...  (make finetune-styles)

``--data`` is what ``manage.py export_drawings`` writes: ``FILE.npz`` (28x28 images as the workers
saw them, labels, ids) and ``FILE.csv`` beside it (the manifest: client ids and dates). A share of the
collected drawings is held out and never trained on: whole writers where the writers are known (an
imported UJI drawing's client id names its writer, ``uji-W01-...``), else the newest drawings. The
rest joins the training part of MNIST (the starting model's own split, so its validation images stay
unseen) as a fixed share of every epoch, with the starting model's recipe (canvas-style copies,
affine/elastic/thickness augmentation, synthetic non-digits).

Only reviewed drawings are used unless ``--include-unreviewed``: a row of the export whose label is
the person's alone (the manifest's ``label_source`` "person-unreviewed", or an empty ``reviewed_at``
in an older manifest) is left out, and counted in the card; anyone can draw on the page and say what
digit it is. (A manifest with neither column, not written by export_drawings, is taken as it is.)

The new model and the starting model are measured the same way: MNIST validation split, its
canvas-style copies, and the held-out collected drawings (per class). Both sets of figures go into
the new card with both data sources. This module writes a new version (weights + card) and never
touches ``current.json``: making a model current is a person's decision.

``--styles P`` (with or without collected drawings) adds writing styles MNIST lacks: each 1, 4, 5 and
7 of an epoch is replaced, with probability P, by a copy of it whose traced strokes got a style
(:mod:`digits.data.stroke_styles`: flagged and looped 1s, crossed 7s, open 4s, two-stroke 5s and 7s).
``--uji-dir`` also measures both models on the UJI dev writers' pen digits (never trained on).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import re
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from digits.data.canvas_style import CACHE_DIR, build_dataset
from digits.data.mnist import load_split
from digits.evaluation.evaluate import VAL_SEED, summarize
from digits.inference.cards import current_model_name
from digits.inference.network import DigitNet
from digits.inference.predictor import MODEL_NAME, load_model
from digits.paths import MODELS_DIR
from digits.training import train as tr

DEFAULT_MODELS = MODELS_DIR
DEFAULT_DATA_DIR = tr.DEFAULT_DATA_DIR
WRITER_ID = re.compile(r"^uji-(W\d+)-")  # import_uji's client ids: uji-<writer>-<label>-<sample>
HOLDOUT_BY = ("writer", "time")
STYLE_SEED = 3000  # + the base's seed: the styled copies' seed (digits.training.train's canvas-style copies use 1000 +)

Log = Callable[[str], None]


# --- the collected drawings ---------------------------------------------------------------------


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


# --- fine-tuning --------------------------------------------------------------------------------


@dataclass
class FinetuneConfig:
    data: Path | None = None  # the export's FILE.npz (None: MNIST and styled copies only, --styles)
    include_unreviewed: bool = False  # also the export's rows labelled by the person alone
    models_dir: Path = DEFAULT_MODELS
    base: str | None = None  # the starting model (default: the current one)
    name: str | None = None  # the new model's name (default: <base>-ft<n>, the first free n)
    version: str | None = None
    data_dir: Path = DEFAULT_DATA_DIR
    holdout_writers: tuple[str, ...] = ()
    holdout_fraction: float = 0.2
    holdout_by: str | None = None
    epochs: int = 3
    mnist_per_epoch: int = 8000  # MNIST training images per epoch, drawn afresh each epoch (0: all)
    collected_share: float = 0.15  # of every epoch's samples: collected drawings (repeated to reach it)
    lr: float = 1e-3  # peak of the one-cycle schedule (the base recipe's is 4e-3: this starts trained)
    weight_decay: float = 5e-4
    batch_size: int = 128
    label_smoothing: float = 0.05
    canvas_fraction: float = 0.7  # as the base recipe: MNIST samples replaced by a canvas-style copy
    outliers: float = 0.1  # synthetic non-digits per batch, as the base recipe (keeps refusals)
    outlier_count: int = 2000
    canvas_val: bool = True  # also measure on the canvas-style validation set (cached)
    threads: int = 2
    cache_dir: Path | None = CACHE_DIR
    progress: bool = False
    command: str = ""  # recorded in the card
    elastic: float = 0.5
    thickness: float = 0.3
    canvas_variants: int = 1  # canvas-style copies per MNIST image (digits.training.train's seeds; 1: its first)
    style_fraction: float = 0.0  # a 1, 4, 5 or 7 replaced by a styled copy (digits.data.stroke_styles)
    style_variants: int = 2  # styled copies per such MNIST training image
    uji_dir: Path | None = None  # also measure the UJI dev writers (never trained on)
    note: str = ""  # recorded in the card (how the recipe was chosen, ...)
    teacher: str | None = None  # distil from this model (in models_dir) on the MNIST samples that are not styled
    distill_weight: float = 0.7  # as digits.training.train
    distill_temperature: float = 3.0


def next_name(models_dir: Path, base: str) -> str:
    n = 1
    while (Path(models_dir) / f"{base}-ft{n}.json").exists() or (Path(models_dir) / f"{base}-ft{n}.pt").exists():
        n += 1
    return f"{base}-ft{n}"


def measure(model: DigitNet, images: np.ndarray, labels: np.ndarray) -> dict:
    """evaluate's figures (accuracy, per class, confusion, ECE) of ``model`` at its own temperature
    (``images`` uint8, 255 = ink, or float in [0, 1] as :func:`digits.data.uji.render` gives them)."""
    x = tr.to_tensor(images) if images.dtype == np.uint8 else torch.from_numpy(images).float().unsqueeze(1)
    logits = tr.logits_of(model, x)
    t = float(model.temperature)
    probs = torch.softmax(logits.double() / t, dim=1).numpy()
    return summarize(probs, labels.astype(np.int64), t)


def figures(model: DigitNet, sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, dict]:
    return {name: measure(model, *xy) for name, xy in sets.items()}


def finetune(cfg: FinetuneConfig, log: Log = print) -> dict:
    """Fine-tune, write ``<name>.pt`` and ``<name>.json`` into ``cfg.models_dir``; returns the card."""
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    models_dir = Path(cfg.models_dir)
    base_name = cfg.base or current_model_name(models_dir)
    name = cfg.name or next_name(models_dir, base_name)
    if not MODEL_NAME.fullmatch(name):
        raise ValueError(f"invalid model name {name!r}")
    if (models_dir / f"{name}.json").exists() or (models_dir / f"{name}.pt").exists():
        raise FileExistsError(f"model {name} exists in {models_dir}: a fine-tune writes a new version")
    if cfg.data is None and cfg.style_fraction <= 0:
        raise ValueError("nothing to fine-tune on: give collected drawings (--data) or styled copies (--styles)")
    _, base_card, base = load_model(models_dir, base_name)

    collected: Collected | None = None
    split: Holdout | None = None
    if cfg.data is not None:
        collected = load_collected(cfg.data, include_unreviewed=cfg.include_unreviewed)
        if collected.unreviewed_left_out:
            log(
                f"left out {collected.unreviewed_left_out} drawings of the export labelled by the person alone, "
                "never reviewed (--include-unreviewed to train on them)"
            )
        if not len(collected):
            raise ValueError(
                f"{cfg.data}: no reviewed drawings to train on (--include-unreviewed to use the person's labels alone)"
            )
        if cfg.holdout_writers and cfg.holdout_by == "time":
            raise ValueError("held-out writers and a time-based hold-out exclude each other")
        if cfg.holdout_writers:
            split = holdout_writers(collected, cfg.holdout_writers)
        else:
            split = holdout_share(collected, cfg.holdout_fraction, cfg.holdout_by, seed=int(base_card["training"]["seed"]))
        if not len(split.train):
            raise ValueError("no collected drawings left to train on")
        log(
            f"collected: {len(collected)} drawings from {collected.path}; {len(split.train)} to train on, "
            f"{len(split.held_out)} held out ({split.describe()})"
        )

    # The starting model's own split: its validation images stay unseen by both models.
    seed = int(base_card["training"]["seed"])
    val_fraction = float(base_card["training"].get("val_fraction", 0.1))
    images, labels = load_split(cfg.data_dir, "train")
    train_idx, val_idx = tr.stratified_split(labels, val_fraction, seed)
    sets = {"val": (images[val_idx], labels[val_idx])}
    if cfg.canvas_val:  # the set evaluate and train select on (grid of brushes, sizes, places)
        sets["canvas_val"] = (
            build_dataset(
                images[val_idx], VAL_SEED, mode="grid", cache_dir=cfg.cache_dir, progress=cfg.progress, desc="canvas-style val"
            ),
            labels[val_idx],
        )
    if collected is not None and split is not None:
        sets["held_out"] = (collected.images[split.held_out], collected.labels[split.held_out])
    if cfg.uji_dir is not None:  # measured, never trained on
        from digits.data import uji

        pen = uji.load_dev(Path(cfg.uji_dir))
        sets["uji_dev"] = (uji.render(pen), uji.labels(pen))
    before = figures(base, sets)
    log("before: " + _summary_line(base_name, before))

    teacher = None
    if cfg.teacher:  # selected on the base's validation split, as digits.training.train requires
        teacher, teacher_card = tr.load_teacher(models_dir, cfg.teacher)
        if teacher_card["data"].get("validation_split") != tr.split_description(tr.Config(seed=seed, val_fraction=val_fraction)):
            raise ValueError(f"teacher {cfg.teacher} was selected on another validation split than {base_name}")
    model = _fit(cfg, base, images[train_idx], labels[train_idx], collected, split, seed, log, teacher)

    calibration = _calibrate(model, sets)
    after = figures(model, sets)
    log("after:  " + _summary_line(name, after))
    wall_s = time.perf_counter() - t0

    models_dir.mkdir(parents=True, exist_ok=True)
    weights = models_dir / f"{name}.pt"
    tr.save_weights(model, weights)
    card = _card(
        cfg,
        name,
        base_name,
        base_card,
        model,
        weights,
        collected,
        split,
        counts={"train": len(train_idx), "val": len(val_idx)},
        before=before,
        after=after,
        calibration=calibration,
        wall_s=wall_s,
    )
    tr.write_json(models_dir / f"{name}.json", card)
    log(f"wrote {weights} and {models_dir / (name + '.json')} (current.json left as it was)")
    return card


def _summary_line(name: str, figs: dict[str, dict]) -> str:
    return f"{name}: " + ", ".join(f"{k} {v['accuracy']:.2%} ({v['errors']}/{v['count']} wrong)" for k, v in figs.items())


def _fit(
    cfg: FinetuneConfig,
    base: DigitNet,
    mnist_images: np.ndarray,
    mnist_labels: np.ndarray,
    collected: Collected | None,
    split: Holdout | None,
    seed: int,
    log: Log,
    teacher: torch.nn.Module | None = None,
) -> DigitNet:
    """The starting weights trained ``cfg.epochs`` more epochs; the last epoch's weights are kept
    (nothing here looks at the held-out drawings or chooses on the validation split).

    With ``cfg.style_fraction``, each 1, 4, 5 or 7 of an epoch that has styled copies
    (:func:`digits.data.stroke_styles.build_pool`) is replaced by one of them with that probability (the
    copy is already drawn like a canvas drawing: it stands for the image and its canvas-style copy)."""
    model = DigitNet(channels=base.channels)
    model.load_state_dict(base.state_dict())
    model.temperature.fill_(1.0)  # trained on raw logits; refitted after
    per_epoch = min(cfg.mnist_per_epoch or len(mnist_images), len(mnist_images))
    share = cfg.collected_share
    have_collected = collected is not None and split is not None and share > 0
    n_collected = max(len(split.train), round(per_epoch * share / (1 - share))) if split is not None and have_collected else 0
    steps = math.ceil((per_epoch + n_collected) / cfg.batch_size)
    tcfg = tr.Config(
        epochs=cfg.epochs,
        seed=seed,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        label_smoothing=cfg.label_smoothing,
        threads=cfg.threads,
        progress=cfg.progress,
        canvas_fraction=cfg.canvas_fraction,
        outliers=cfg.outliers,
        outlier_count=cfg.outlier_count,
    )
    opt, sched = tr.make_optimizer(model, tcfg, steps)
    aug = tr.Augment(elastic=cfg.elastic, thickness=cfg.thickness)
    canvas_all = None
    if cfg.canvas_fraction > 0:  # the same copies (seeds, cache) as digits.training.train's first variants
        canvas_all = np.stack(
            [
                build_dataset(
                    mnist_images,
                    1000 + seed + 7919 * v,
                    cache_dir=cfg.cache_dir,
                    progress=cfg.progress,
                    desc=f"canvas-style train {v + 1}",
                )
                for v in range(max(1, cfg.canvas_variants))
            ]
        )
    pool = None
    if cfg.style_fraction > 0:
        from digits.data.stroke_styles import build_pool

        pool = build_pool(
            mnist_images,
            mnist_labels,
            STYLE_SEED + seed,
            variants=cfg.style_variants,
            cache_dir=cfg.cache_dir,
            progress=cfg.progress,
        )
        log(
            f"styled copies: {len(pool)} of {len(np.unique(pool.source))} MNIST training digits "
            f"({', '.join(f'{k} {v}' for k, v in pool.counts().items())})"
        )
        by_source = np.argsort(pool.source, kind="stable")
        sorted_source = pool.source[by_source]
    outliers = None
    if cfg.outliers > 0:
        from digits.inference.refusal import synthetic_non_digits

        outliers = torch.from_numpy(synthetic_non_digits(cfg.outlier_count, seed=seed)[0]).unsqueeze(1)
    if teacher is not None:
        tcfg.distill_weight, tcfg.distill_temperature = cfg.distill_weight, cfg.distill_temperature
        log(f"distilling from {cfg.teacher} on the MNIST samples that are not styled (weight {cfg.distill_weight})")
    if collected is not None and split is not None:
        ours, ours_labels = collected.images[split.train], collected.labels[split.train]
    else:
        ours, ours_labels = np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.int64)
    rng = np.random.default_rng(seed)
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        pick = rng.permutation(len(mnist_images))[:per_epoch]
        # every collected training drawing at least once an epoch, the rest of the share drawn at random
        rep = (
            np.concatenate([np.arange(len(ours)), rng.integers(0, len(ours), n_collected - len(ours))])
            if n_collected
            else np.zeros(0, np.int64)
        )
        mnist_x = mnist_images[pick]
        mnist_canvas = None
        if canvas_all is not None:
            mnist_canvas = (
                canvas_all[0, pick] if len(canvas_all) == 1 else canvas_all[rng.integers(0, len(canvas_all), len(pick)), pick]
            )
        styled = ""
        use = np.zeros(len(pick), dtype=bool)
        if pool is not None:
            first = np.searchsorted(sorted_source, pick, "left")
            copies = np.searchsorted(sorted_source, pick, "right") - first
            use = (copies > 0) & (rng.random(len(pick)) < cfg.style_fraction)
            which = by_source[first[use] + (rng.random(int(use.sum())) * copies[use]).astype(np.int64)]
            mnist_x = mnist_x.copy()
            mnist_x[use] = pool.images[which]
            if mnist_canvas is not None:
                mnist_canvas = mnist_canvas.copy()
                mnist_canvas[use] = pool.images[which]
            styled = f" ({int(use.sum())} of them styled)"
        x = tr.to_tensor(np.concatenate([mnist_x, ours[rep]]))
        y = torch.from_numpy(np.concatenate([mnist_labels[pick], ours_labels[rep]]).astype(np.int64))
        canvas = None
        if mnist_canvas is not None:  # a collected drawing is already drawn on a canvas: its own copy
            canvas = tr.to_tensor(np.concatenate([mnist_canvas, ours[rep]])).unsqueeze(0)
        if teacher is None:
            loss = tr.train_one_epoch(model, x, y, opt, sched, tcfg, aug, epoch, canvas, outliers)
        else:  # the teacher never saw styled or collected digits: those learn from their labels alone
            mask = torch.from_numpy(np.concatenate([~use, np.zeros(len(rep), dtype=bool)]))
            loss = tr.train_one_epoch(model, x, y, opt, sched, tcfg, aug, epoch, canvas, outliers, teacher, distill_mask=mask)
        log(
            f"epoch {epoch + 1}/{cfg.epochs}: loss {loss:.4f} on {per_epoch} MNIST{styled} + {n_collected} "
            f"collected samples  {time.perf_counter() - t0:.0f}s"
        )
    return model.eval()


def _calibrate(model: DigitNet, sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """Temperature scaling on the validation split (and its canvas-style copies), as digits.training.train does."""
    names = [k for k in ("val", "canvas_val") if k in sets]
    x = tr.to_tensor(np.concatenate([sets[k][0] for k in names]))
    y = torch.from_numpy(np.concatenate([sets[k][1] for k in names]).astype(np.int64))
    logits = tr.logits_of(model, x)
    temperature = tr.fit_temperature(logits, y)
    model.temperature.fill_(temperature)
    return {
        "method": "temperature scaling (NLL, LBFGS) on the validation split"
        + (" and its canvas-style copies" if "canvas_val" in names else ""),
        "temperature": round(temperature, 6),
        "val_ece_before": round(tr.ece_of(logits, y), 6),
        "val_ece_after": round(tr.ece_of(logits, y, temperature), 6),
    }


def _metrics(figs: dict[str, dict]) -> dict:
    keys = ("count", "accuracy", "errors", "per_class_accuracy", "confusion", "ece")
    out = {"val_accuracy": figs["val"]["accuracy"], "val_ece": figs["val"]["ece"]}
    if "canvas_val" in figs:
        out["canvas_val_accuracy"] = figs["canvas_val"]["accuracy"]
    if "held_out" in figs:
        held = figs["held_out"]
        out["held_out_collected_accuracy"] = held["accuracy"]  # a plain figure, for lists of models
        out["held_out_collected"] = {k: held[k] for k in keys}
    if "uji_dev" in figs:
        pen = figs["uji_dev"]
        out["uji_dev_accuracy"] = pen["accuracy"]
        out["uji_dev"] = {k: pen[k] for k in keys}
    return out


def _card(
    cfg: FinetuneConfig,
    name: str,
    base_name: str,
    base_card: dict,
    model: DigitNet,
    weights: Path,
    collected: Collected | None,
    split: Holdout | None,
    counts: dict[str, int],
    before: dict,
    after: dict,
    calibration: dict,
    wall_s: float,
) -> dict:
    data = {
        "dir": str(cfg.data_dir),
        "description": base_card["data"].get("description", "MNIST training part"),
        "train_count": counts["train"],
        "val_count": counts["val"],
        "validation_split": base_card["data"].get(
            "validation_split",
            tr.split_description(
                tr.Config(
                    seed=int(base_card["training"]["seed"]), val_fraction=float(base_card["training"].get("val_fraction", 0.1))
                )
            ),
        ),
        "augmentation": tr.Augment(elastic=cfg.elastic, thickness=cfg.thickness).describe(),
    }
    if collected is not None and split is not None:
        known = sorted({w for w in collected.writers if w})
        held = set(split.writers)
        data["collected"] = {
            "file": str(collected.path),
            "sha256": hashlib.sha256(collected.path.read_bytes()).hexdigest(),
            "count": len(collected),
            "train_count": int(len(split.train)),
            "held_out_count": int(len(split.held_out)),
            "held_out_by": split.by,
            "held_out_writers": list(split.writers),
            "train_writers": [w for w in known if w not in held],
            "unknown_writer_count": sum(w is None for w in collected.writers),
            "include_unreviewed": cfg.include_unreviewed,
            "unreviewed_left_out": collected.unreviewed_left_out,
            "unreviewed_count": collected.unreviewed,  # rows used with the person's label alone
            "held_out_ids": collected.ids[split.held_out].tolist(),
            "share_of_training_samples": cfg.collected_share,
        }
    seed = int(base_card["training"]["seed"])
    if cfg.canvas_fraction > 0 and cfg.canvas_variants <= 1:
        data["canvas_style"] = (
            f"1 canvas-style copy of each MNIST training image (digits.data.canvas_style, seed "
            f"{1000 + seed}); an MNIST sample is replaced by it "
            f"with probability {cfg.canvas_fraction}"
        )
    elif cfg.canvas_fraction > 0:
        data["canvas_style"] = (
            f"{cfg.canvas_variants} canvas-style copies of each MNIST training image "
            f"(digits.data.canvas_style, digits.training.train's seeds {1000 + seed} + 7919 v); an MNIST sample "
            f"is replaced by one of them with probability {cfg.canvas_fraction}"
        )
    if cfg.style_fraction > 0:
        from digits.data.stroke_styles import describe

        data["stroke_styles"] = describe(cfg.style_fraction, cfg.style_variants) + f" (seed {STYLE_SEED + seed})"
    if cfg.uji_dir is not None:
        data["uji_dev"] = (
            f"UJI dev writers ({cfg.uji_dir}): measured only, never trained on (digits.data.uji: "
            "pen strokes drawn on the page's canvas)"
        )
    if cfg.outliers > 0:
        data["outlier_exposure"] = f"{cfg.outlier_count} synthetic non-digits, {cfg.outliers:.0%} of a batch"
    return {
        "name": name,
        "version": cfg.version or f"{base_card.get('version', '0')}+{name}",
        "architecture": base_card["architecture"],
        "framework": f"torch {torch.__version__.split('+')[0]}",
        "fine_tuned_from": {"name": base_name, "version": base_card.get("version"), "sha256": base_card["weights"]["sha256"]},
        "data": data,
        "training": {
            "epochs": cfg.epochs,
            "seed": seed,  # the base's: evaluate rebuilds the same split from it
            "val_fraction": float(base_card["training"].get("val_fraction", 0.1)),
            "mnist_per_epoch": cfg.mnist_per_epoch or counts["train"],
            "batch_size": cfg.batch_size,
            "optimizer": f"AdamW(lr={cfg.lr}, weight_decay={cfg.weight_decay}), cross-entropy with label "
            f"smoothing {cfg.label_smoothing}",
            "lr_schedule": "OneCycleLR (20% warm-up, cosine annealing), stepped per batch",
            "selection": "the last epoch's weights (nothing chosen on the validation split or the held-out drawings)",
            "command": cfg.command,
            "wall_time_s": round(wall_s, 1),
            "threads": cfg.threads,
            "calibration": calibration,
            **({"note": cfg.note} if cfg.note else {}),
            **(
                {
                    "distillation": {
                        "teacher": cfg.teacher,
                        "teacher_sha256": json.loads((Path(cfg.models_dir) / f"{cfg.teacher}.json").read_text())["weights"][
                            "sha256"
                        ],
                        "loss": f"on the MNIST samples that are not styled: {1 - cfg.distill_weight:g} x the label loss + "
                        f"{cfg.distill_weight:g} x T^2 x KL(teacher || student) at temperature T = "
                        f"{cfg.distill_temperature:g}; styled copies (and collected drawings): the label loss alone",
                    }
                }
                if cfg.teacher
                else {}
            ),
        },
        "metrics": _metrics(after),
        "comparison": {
            "measured": "both models on the same sets: the MNIST validation split of the training part"
            + (", its canvas-style copies" if cfg.canvas_val else "")
            + (", the held-out collected drawings" if collected is not None else "")
            + (", the UJI dev writers" if cfg.uji_dir is not None else ""),
            "before": {"model": base_name, **_metrics(before)},
            "after": {"model": name, **_metrics(after)},
        },
        "weights": {"file": weights.name, "sha256": tr.sha256_file(weights), "bytes": weights.stat().st_size},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


# --- command line -------------------------------------------------------------------------------


def _writers(text: str) -> tuple[str, ...]:
    names = tuple(w.strip() for w in text.split(",") if w.strip())
    if not names:
        raise argparse.ArgumentTypeError("a comma-separated list of writers, e.g. W01,W02")
    return names


def add_arguments(
    p: argparse.ArgumentParser, *, models_dir: Path = DEFAULT_MODELS, data_dir: Path = DEFAULT_DATA_DIR, styles: bool = False
) -> None:
    """The options of ``python -m digits.finetune`` and ``manage.py retrain`` (one definition);
    ``styles``: also the styled copies' options, and ``--data`` optional (``python -m digits.finetune``)."""
    d = FinetuneConfig(data=Path())
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
    p.add_argument("--data-dir", type=Path, default=data_dir, help="MNIST IDX files")
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
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--mnist-per-epoch", type=int, default=d.mnist_per_epoch, help="0: the whole training part")
    p.add_argument("--collected-share", type=float, default=d.collected_share)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--canvas-fraction", type=float, default=d.canvas_fraction)
    p.add_argument("--outliers", type=float, default=d.outliers)
    p.add_argument("--outlier-count", type=int, default=d.outlier_count)
    p.add_argument("--no-canvas-val", dest="canvas_val", action="store_false")
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--cache-dir", type=Path, default=d.cache_dir)
    p.add_argument("--progress", action="store_true")
    if styles:
        from digits.data.uji import DEFAULT_DIR as UJI_DIR

        p.add_argument(
            "--canvas-variants",
            type=int,
            default=d.canvas_variants,
            help="canvas-style copies per MNIST image (digits.training.train's seeds)",
        )
        p.add_argument(
            "--styles",
            dest="style_fraction",
            type=float,
            default=d.style_fraction,
            help="probability that a 1, 4, 5 or 7 is replaced by a styled copy (digits.data.stroke_styles)",
        )
        p.add_argument("--style-variants", type=int, default=d.style_variants, help="styled copies per such digit")
        p.add_argument(
            "--uji-dir", type=Path, default=None, help=f"also measure the UJI dev writers, never trained on (e.g. {UJI_DIR})"
        )
        p.add_argument("--note", default="", help="recorded in the card's training section")
        p.add_argument(
            "--teacher", default=None, help="distil from this model (in --models-dir) on the MNIST samples that are not styled"
        )
        p.add_argument("--distill-weight", type=float, default=d.distill_weight)
        p.add_argument("--distill-temperature", type=float, default=d.distill_temperature)


def config_from(options: dict, command: str) -> FinetuneConfig:
    fields = FinetuneConfig.__dataclass_fields__
    return FinetuneConfig(**{k: v for k, v in options.items() if k in fields}, command=command)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m digits.finetune", description=__doc__.split("\n")[0])
    add_arguments(p, styles=True)
    return finetune(config_from(vars(p.parse_args(argv)), shlex.join(["python", "-m", "digits.training.finetune", *argv])))


if __name__ == "__main__":
    main()
