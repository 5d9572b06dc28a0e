"""Fine-tune a trained model on the MNIST training part plus collected drawings, and compare.

``--data`` is what ``manage.py export_drawings`` writes: ``FILE.npz`` (28x28 images as the workers
saw them, labels, ids) and ``FILE.csv`` beside it (the manifest: client ids and dates). A share of the
collected drawings is held out and never trained on: whole writers where the writers are known (an
imported UJI drawing's client id names its writer, ``uji-W01-...``), else the newest drawings. The
rest joins the training part of MNIST (the starting model's own split, so its validation images stay
unseen) as a fixed share of every epoch, with the starting model's recipe (canvas-style copies,
affine/elastic/thickness augmentation, synthetic non-digits).

Only reviewed drawings are used unless ``--include-unreviewed`` (:mod:`digits.training.collected`).

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
import math
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from digits.data import style_pool, uji
from digits.data.canvas_style import build_dataset
from digits.data.mnist import load_split
from digits.data.splits import CANVAS_SEED, STYLE_SEED, VAL_SEED, split_description, stratified_split
from digits.evaluation.metrics import summarize
from digits.inference.cards import current_model_name
from digits.inference.network import DigitNet
from digits.inference.predictor import MODEL_NAME, load_model
from digits.inference.refusal import synthetic_non_digits
from digits.training import loop
from digits.training.augment import Augment, to_tensor
from digits.training.calibration import calibrate, logits_of
from digits.training.card import finetune_card, save_weights, write_json
from digits.training.collected import Collected, Holdout, holdout_share, holdout_writers, load_collected
from digits.training.distill import load_teacher
from digits.training.loop import Extras, make_optimizer
from digits.training.recipe import FinetuneConfig, add_finetune_arguments, config_from

Log = Callable[[str], None]

# manage.py retrain's names for the options (one definition, in digits.training.recipe)
add_arguments = add_finetune_arguments


def next_name(models_dir: Path, base: str) -> str:
    n = 1
    while (Path(models_dir) / f"{base}-ft{n}.json").exists() or (Path(models_dir) / f"{base}-ft{n}.pt").exists():
        n += 1
    return f"{base}-ft{n}"


def measure(model: DigitNet, images: np.ndarray, labels: np.ndarray) -> dict:
    """evaluate's figures (accuracy, per class, confusion, ECE) of ``model`` at its own temperature
    (``images`` uint8, 255 = ink, or float in [0, 1] as :func:`digits.data.uji.render` gives them)."""
    x = to_tensor(images) if images.dtype == np.uint8 else torch.from_numpy(images).float().unsqueeze(1)
    logits = logits_of(model, x)
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
    if cfg.data is None and cfg.styles <= 0:
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
    train_idx, val_idx = stratified_split(labels, val_fraction, seed)
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
        pen = uji.load_dev(Path(cfg.uji_dir))
        sets["uji_dev"] = (uji.render(pen), uji.labels(pen))
    before = figures(base, sets)
    log("before: " + _summary_line(base_name, before))

    teacher = None
    if cfg.teacher:  # selected on the base's validation split, as digits.training.train requires
        teacher, teacher_card = load_teacher(models_dir, cfg.teacher)
        if teacher_card["data"].get("validation_split") != split_description(seed, val_fraction):
            raise ValueError(f"teacher {cfg.teacher} was selected on another validation split than {base_name}")
    model = _fit(cfg, base, images[train_idx], labels[train_idx], collected, split, seed, log, teacher)

    calibration = _calibrate(model, sets)
    after = figures(model, sets)
    log("after:  " + _summary_line(name, after))
    wall_s = time.perf_counter() - t0

    models_dir.mkdir(parents=True, exist_ok=True)
    weights = models_dir / f"{name}.pt"
    save_weights(model, weights)
    card = finetune_card(
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
    write_json(models_dir / f"{name}.json", card)
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

    With ``cfg.styles``, each 1, 4, 5 or 7 of an epoch that has styled copies
    (:func:`digits.data.style_pool.build_pool`) is replaced by one of them with that probability (the
    copy is already drawn like a canvas drawing: it stands for the image and its canvas-style copy)."""
    model = DigitNet(channels=base.channels)
    model.load_state_dict(base.state_dict())
    model.temperature.fill_(1.0)  # trained on raw logits; refitted after
    per_epoch = min(cfg.mnist_per_epoch or len(mnist_images), len(mnist_images))
    share = cfg.collected_share
    have_collected = collected is not None and split is not None and share > 0
    n_collected = max(len(split.train), round(per_epoch * share / (1 - share))) if split is not None and have_collected else 0
    steps = math.ceil((per_epoch + n_collected) / cfg.batch_size)
    tcfg = replace(cfg, seed=seed)  # the recipe, at the starting model's seed
    opt, sched = make_optimizer(model, tcfg, steps)
    aug = Augment(elastic=cfg.elastic, thickness=cfg.thickness)
    canvas_all = None
    if cfg.canvas_fraction > 0:  # the same copies (seeds, cache) as digits.training.train's first variants
        canvas_all = np.stack(
            [
                build_dataset(
                    mnist_images,
                    CANVAS_SEED + seed + 7919 * v,
                    cache_dir=cfg.cache_dir,
                    progress=cfg.progress,
                    desc=f"canvas-style train {v + 1}",
                )
                for v in range(max(1, cfg.canvas_variants))
            ]
        )
    pool = None
    if cfg.styles > 0:
        pool = style_pool.build_pool(
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
        outliers = torch.from_numpy(synthetic_non_digits(cfg.outlier_count, seed=seed)[0]).unsqueeze(1)
    if teacher is not None:
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
            use = (copies > 0) & (rng.random(len(pick)) < cfg.styles)
            which = by_source[first[use] + (rng.random(int(use.sum())) * copies[use]).astype(np.int64)]
            mnist_x = mnist_x.copy()
            mnist_x[use] = pool.images[which]
            if mnist_canvas is not None:
                mnist_canvas = mnist_canvas.copy()
                mnist_canvas[use] = pool.images[which]
            styled = f" ({int(use.sum())} of them styled)"
        x = to_tensor(np.concatenate([mnist_x, ours[rep]]))
        y = torch.from_numpy(np.concatenate([mnist_labels[pick], ours_labels[rep]]).astype(np.int64))
        canvas = None
        if mnist_canvas is not None:  # a collected drawing is already drawn on a canvas: its own copy
            canvas = to_tensor(np.concatenate([mnist_canvas, ours[rep]])).unsqueeze(0)
        if teacher is None:
            loss = loop.train_one_epoch(model, x, y, opt, sched, tcfg, aug, epoch, Extras(canvas, outliers))
        else:  # the teacher never saw styled or collected digits: those learn from their labels alone
            mask = torch.from_numpy(np.concatenate([~use, np.zeros(len(rep), dtype=bool)]))
            extras = Extras(canvas, outliers, teacher, distill_mask=mask)
            loss = loop.train_one_epoch(model, x, y, opt, sched, tcfg, aug, epoch, extras)
        log(
            f"epoch {epoch + 1}/{cfg.epochs}: loss {loss:.4f} on {per_epoch} MNIST{styled} + {n_collected} "
            f"collected samples  {time.perf_counter() - t0:.0f}s"
        )
    return model.eval()


def _calibrate(model: DigitNet, sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """Temperature scaling on the validation split (and its canvas-style copies), as digits.training.train does."""
    names = [k for k in ("val", "canvas_val") if k in sets]
    x = to_tensor(np.concatenate([sets[k][0] for k in names]))
    y = torch.from_numpy(np.concatenate([sets[k][1] for k in names]).astype(np.int64))
    return calibrate(model, x, y, with_canvas="canvas_val" in names)


# --- command line -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m digits.finetune", description=__doc__.split("\n")[0])
    add_finetune_arguments(p, styles=True)
    return finetune(config_from(vars(p.parse_args(argv)), shlex.join(["python", "-m", "digits.training.finetune", *argv])))


if __name__ == "__main__":
    main()
