"""Train DigitNet on MNIST and write the weights, the model card and ``current.json``.

Training data: the training part's images, mixed (``--canvas-fraction``) with canvas-style copies of
them (:mod:`digits.data.canvas_style`: skeleton -> polylines -> sparse-sampling simplification -> redrawn
with a random round brush at a random size and place -> the serving preprocessing), all with random
affine jitter, elastic distortion and stroke thickness variation (dilate/erode) on the fly. After
training the softmax temperature is fitted on the validation split (stored in the model's
``temperature`` buffer, so the saved weights carry it; ECE before/after goes into the card).

``--styles P`` replaces a 1, 4, 5 or 7 with probability P by a copy whose traced strokes got a writing
style MNIST lacks (:mod:`digits.data.stroke_styles`), and ``--uploads P`` any sample by an upload rendition of
it (:mod:`digits.data.upload_renditions`: one of the upload set's recipes read back by the service's upload
path). ``--device cuda`` trains the network on a GPU; the data, and every random draw, stay on the CPU.

``--teacher NAME`` adds knowledge distillation: the student also matches the softened predictions of a
trained (larger, slower) model on the same augmented batches. The teacher must have been selected on
the same validation split (same seed), so that split stays unseen by both.

Model selection uses a validation split of the training part only (its images and their canvas-style
copies); the test set is evaluated once, at the end, for the model card. A checkpoint per epoch goes
to ``<out>/.ckpt/`` (not committed), and ``--resume`` continues from it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from digits.data import style_pool, upload_renditions
from digits.data.canvas_style import build_dataset
from digits.data.mnist import load_split
from digits.data.splits import CANVAS_SEED, STYLE_SEED, VAL_SEED, stratified_split
from digits.inference.predictor import load_model
from digits.inference.refusal import synthetic_non_digits
from digits.training.augment import Augment, to_tensor
from digits.training.calibration import calibrate
from digits.training.card import build_card, save_weights, write_json
from digits.training.distill import load_teacher
from digits.training.loop import Extras, Styled, evaluate, fit
from digits.training.recipe import Recipe, parse_args


def canvas_copies(images: np.ndarray, cfg: Recipe, seed: int, variants: int, desc: str, mode: str = "random") -> torch.Tensor:
    """(variants, N, 1, 28, 28) float canvas-style copies of uint8 ``images``."""
    sets = [
        build_dataset(
            images,
            seed + 7919 * v,
            mode=mode,
            cache_dir=cfg.cache_dir,
            progress=cfg.progress,
            desc=f"{desc} {v + 1}/{variants}",
            workers=cfg.workers,
        )
        for v in range(variants)
    ]
    return torch.stack([to_tensor(a) for a in sets])


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    cfg = parse_args(argv)
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    images, labels = load_split(cfg.data_dir, "train")
    train_idx, val_idx = stratified_split(labels, cfg.val_fraction, cfg.seed)
    x, y = to_tensor(images), torch.from_numpy(labels.astype(np.int64))
    print(f"training part: {len(images)} images -> {len(train_idx)} train, {len(val_idx)} validation")
    aug = Augment(elastic=cfg.elastic, thickness=cfg.thickness)
    canvas = canvas_val = None
    if cfg.canvas_fraction > 0:
        canvas = canvas_copies(images[train_idx], cfg, CANVAS_SEED + cfg.seed, cfg.canvas_variants, "canvas-style train")
        # the same canvas-style validation set that `evaluate` reports (grid of brushes/sizes/places)
        canvas_val = canvas_copies(images[val_idx], cfg, VAL_SEED, 1, "canvas-style val", mode="grid")[0]
    outliers = None
    if cfg.outliers > 0:
        outliers = torch.from_numpy(synthetic_non_digits(cfg.outlier_count, seed=cfg.seed)[0]).unsqueeze(1)
        print(f"outlier exposure: {len(outliers)} synthetic non-digits (scribbles, blobs, letters)")
    styled = None
    if cfg.styles > 0:
        pool = style_pool.build_pool(  # the same copies (and cache) as the styles fine-tune's
            images[train_idx],
            labels[train_idx],
            STYLE_SEED + cfg.seed,
            variants=cfg.style_variants,
            cache_dir=cfg.cache_dir,
            progress=cfg.progress,
        )
        styled = Styled.from_pool(pool.images, pool.source, len(train_idx))
        print(
            f"styled copies: {len(pool)} of {int((styled.count > 0).sum())} training digits "
            f"({', '.join(f'{k} {v}' for k, v in pool.counts().items())})"
        )
    uploads = None
    if cfg.uploads > 0:
        uploads = torch.stack(
            [
                to_tensor(a)
                for a in upload_renditions.build(
                    images[train_idx],
                    labels[train_idx],
                    copies=cfg.upload_variants,
                    cache_dir=cfg.cache_dir,
                    workers=cfg.workers,
                    progress=cfg.progress,
                )
            ]
        )
        print(f"upload renditions: {uploads.shape[0]} of each of {uploads.shape[1]} training digits")
    teacher = teacher_card = None
    if cfg.teacher:
        teacher, teacher_card = load_teacher(cfg.teacher_dir, cfg.teacher)
        if teacher_card["data"].get("validation_split") != cfg.split_description():
            # the teacher must not have seen the student's validation images
            raise SystemExit(f"teacher {cfg.teacher} was selected on another validation split; use its seed")
        print(f"distilling from {cfg.teacher} (weight {cfg.distill_weight}, temperature {cfg.distill_temperature})")
    if teacher is not None:
        teacher = teacher.to(cfg.device)
    init_card = None
    if cfg.init:
        _, init_card, _ = load_model(cfg.teacher_dir, cfg.init)
        if init_card["data"].get("validation_split") != cfg.split_description():
            raise SystemExit(f"{cfg.init} was selected on another validation split; use its seed")
        print(f"starting from {cfg.init}'s weights" + (", averaging the weights after each epoch" if cfg.swa else ""))
    extras = Extras(canvas=canvas, outliers=outliers, teacher=teacher, styled=styled, uploads=uploads)
    model, score, best_epoch = fit(cfg, (x[train_idx], y[train_idx]), (x[val_idx], y[val_idx]), aug, print, extras, canvas_val)
    val_acc = evaluate(model, x[val_idx], y[val_idx])

    calibration = None
    if cfg.calibrate:
        # Temperature scaling on the validation split (plus its canvas-style copies when used).
        xv, yv = x[val_idx], y[val_idx]
        if canvas_val is not None:
            xv, yv = torch.cat([xv, canvas_val]), torch.cat([yv, yv])
        calibration = calibrate(model, xv, yv, with_canvas=canvas_val is not None)
        print(
            f"temperature {calibration['temperature']:.4f}: validation ECE {calibration['val_ece_before']:.2%} -> "
            f"{calibration['val_ece_after']:.2%}"
        )
    wall_s = time.perf_counter() - t0

    # The test set is looked at once, here, for the model card only.
    test_images, test_labels = load_split(cfg.data_dir, "test")
    test_acc = evaluate(model, to_tensor(test_images), torch.from_numpy(test_labels.astype(np.int64)))
    print(f"best val acc {val_acc:.4%} (epoch {best_epoch}, score {score:.4%}); test acc {test_acc:.4%}; {wall_s:.0f}s")

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{cfg.name}.pt"
    save_weights(model, weights)
    counts = {"train": len(train_idx), "val": len(val_idx), "test": len(test_images)}
    metrics = {"val_accuracy": round(val_acc, 6), "test_accuracy": round(test_acc, 6)}
    card = build_card(cfg, model, weights, counts, metrics, aug, wall_s, argv, best_epoch, calibration, teacher_card, init_card)
    write_json(out / f"{cfg.name}.json", card)
    if cfg.set_current:
        write_json(out / "current.json", {"model": cfg.name})
    print(
        f"wrote {weights} ({card['weights']['bytes']} bytes), {out / (cfg.name + '.json')}"
        + (f", {out / 'current.json'}" if cfg.set_current else "")
    )
    return card


if __name__ == "__main__":
    main()
