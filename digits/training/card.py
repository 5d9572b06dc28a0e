"""Model cards: what a training or fine-tuning run writes beside the weights (architecture, data,
recipe, figures, the command that made it), and the helpers that write weights and JSON."""

from __future__ import annotations

import hashlib
import json
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from digits.data import style_pool, upload_renditions
from digits.data.splits import CANVAS_SEED, STYLE_SEED, split_description
from digits.inference.network import DigitNet, parameter_count
from digits.inference.refusal import TRAIN_LETTERS
from digits.training.augment import Augment
from digits.training.collected import Collected, Holdout
from digits.training.recipe import FinetuneConfig, Recipe


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_weights(model: nn.Module, path: Path) -> None:
    """Save the state_dict (float32) to ``path``."""
    state = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    torch.save(state, path)


def write_json(path: Path, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=2) + "\n")


def build_card(
    cfg: Recipe,
    model: DigitNet,
    weights: Path,
    counts: dict[str, int],
    metrics: dict[str, float],
    aug: Augment,
    wall_s: float,
    argv: list[str],
    best_epoch: int,
    calibration: dict | None = None,
    teacher_card: dict | None = None,
    init_card: dict | None = None,
) -> dict:
    """The model card of a ``python -m digits.train`` run (``argv``: its options)."""
    card: dict[str, Any] = {
        "name": cfg.name,
        "version": cfg.version,
        "architecture": {
            "class": f"digits.inference.network.{type(model).__name__}",
            "description": model.description,
            "channels": list(model.channels),
            "parameters": parameter_count(model),
        },
        "framework": f"torch {torch.__version__.split('+')[0]}",
        "data": {
            "dir": str(cfg.data_dir),
            "description": "MNIST IDX files (LeCun, Cortes, Burges); the training part here holds the first "
            f"{counts['train'] + counts['val']} of the 60,000 official training images",
            "train_count": counts["train"],
            "val_count": counts["val"],
            "test_count": counts["test"],
            "validation_split": cfg.split_description(),
            "augmentation": aug.describe(),
        },
        "training": {
            "epochs": cfg.epochs,
            "best_epoch": best_epoch,
            "seed": cfg.seed,
            "batch_size": cfg.batch_size,
            "optimizer": f"AdamW(lr={cfg.lr}, weight_decay={cfg.weight_decay}), "
            f"cross-entropy with label smoothing {cfg.label_smoothing}",
            "lr_schedule": "OneCycleLR (20% warm-up, cosine annealing), stepped per batch",
            "selection": "weights of the epoch with the best validation accuracy",
            "command": shlex.join(["python", "-m", "digits.training.train", *argv]),
            "wall_time_s": round(wall_s, 1),
            "threads": cfg.threads,
        },
        "metrics": metrics,
        "weights": {"file": weights.name, "sha256": sha256_file(weights), "bytes": weights.stat().st_size},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if cfg.canvas_fraction > 0:
        card["data"]["canvas_style"] = (
            f"{cfg.canvas_variants} canvas-style cop{'y' if cfg.canvas_variants == 1 else 'ies'} of each training "
            "image (digits.data.canvas_style: skeleton -> polylines -> RDP/point dropping/jitter like sparse mouse "
            "sampling -> round brush of random width (5-30% of digit size) at a random size and place on a "
            "random canvas -> digits.inference.render.strokes_to_mnist); each sample is replaced by one of its copies "
            f"with probability {cfg.canvas_fraction}"
        )
        card["training"]["selection"] = (
            "weights of the epoch with the best mean of the validation accuracy and "
            "the canvas-style validation accuracy (validation split only)"
        )
    if cfg.outliers > 0:
        card["data"]["outlier_exposure"] = (
            f"{cfg.outlier_count} synthetic non-digits (digits.inference.refusal.synthetic_non_digits: scribbles, filled "
            f"blobs, letters {', '.join(TRAIN_LETTERS)}); "
            f"{cfg.outliers:.0%} of a batch, loss weight {cfg.outlier_weight} x cross-entropy to uniform"
        )
    if cfg.styles > 0:
        card["data"]["stroke_styles"] = style_pool.describe(cfg.styles, cfg.style_variants) + f" (seed {STYLE_SEED + cfg.seed})"
    if cfg.uploads > 0:
        card["data"]["upload_renditions"] = upload_renditions.describe(cfg.uploads, cfg.upload_variants)
    if cfg.device != "cpu":
        card["training"]["device"] = (
            f"{cfg.device} ({torch.cuda.get_device_name()})"
            if cfg.device.startswith("cuda") and torch.cuda.is_available()
            else cfg.device
        )
    card["training"]["val_fraction"] = cfg.val_fraction
    if calibration:
        card["training"]["calibration"] = calibration
    if teacher_card is not None:
        card["training"]["distillation"] = {
            "teacher": teacher_card["name"],
            "teacher_sha256": teacher_card["weights"]["sha256"],
            "loss": f"{1 - cfg.distill_weight:g} x the label loss + {cfg.distill_weight:g} x T^2 x "
            f"KL(teacher || student) at temperature T = {cfg.distill_temperature:g}, on the same augmented batch"
            + (
                "; styled copies and upload renditions (the teacher never saw their like) learn from their labels alone"
                if (cfg.styles > 0 or cfg.uploads > 0) and not cfg.distill_all
                else ""
            ),
        }
    if init_card is not None:
        card["training"]["init"] = {"from": init_card["name"], "sha256": init_card["weights"]["sha256"]}
    if cfg.swa:
        card["training"]["lr_schedule"] = f"constant {cfg.lr:g} (AdamW)"
        card["training"]["selection"] = (
            f"none: the average of the weights and BatchNorm statistics after each of the "
            f"{cfg.epochs} epochs (stochastic weight averaging)"
        )
    return card


def comparison_metrics(figs: dict[str, dict]) -> dict:
    """What a fine-tune's card records of one model's figures on each set (:func:`finetune_card`)."""
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


def finetune_card(
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
    """The card of a fine-tune of ``base_name`` into ``name``: its data (with the collected drawings
    and their hold-out), recipe and figures, and both models' figures on the same sets."""
    data = {
        "dir": str(cfg.data_dir),
        "description": base_card["data"].get("description", "MNIST training part"),
        "train_count": counts["train"],
        "val_count": counts["val"],
        "validation_split": base_card["data"].get(
            "validation_split",
            split_description(int(base_card["training"]["seed"]), float(base_card["training"].get("val_fraction", 0.1))),
        ),
        "augmentation": Augment(elastic=cfg.elastic, thickness=cfg.thickness).describe(),
    }
    if collected is not None and split is not None:
        known = sorted({w for w in collected.writers if w})
        held = set(split.writers)
        data["collected"] = {
            "file": str(collected.path),
            "sha256": hashlib.sha256(collected.path.read_bytes()).hexdigest(),
            "count": len(collected),
            "train_count": len(split.train),
            "held_out_count": len(split.held_out),
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
            f"{CANVAS_SEED + seed}); an MNIST sample is replaced by it "
            f"with probability {cfg.canvas_fraction}"
        )
    elif cfg.canvas_fraction > 0:
        data["canvas_style"] = (
            f"{cfg.canvas_variants} canvas-style copies of each MNIST training image "
            f"(digits.data.canvas_style, digits.training.train's seeds {CANVAS_SEED + seed} + 7919 v); an MNIST sample "
            f"is replaced by one of them with probability {cfg.canvas_fraction}"
        )
    if cfg.styles > 0:
        data["stroke_styles"] = style_pool.describe(cfg.styles, cfg.style_variants) + f" (seed {STYLE_SEED + seed})"
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
        "metrics": comparison_metrics(after),
        "comparison": {
            "measured": "both models on the same sets: the MNIST validation split of the training part"
            + (", its canvas-style copies" if cfg.canvas_val else "")
            + (", the held-out collected drawings" if collected is not None else "")
            + (", the UJI dev writers" if cfg.uji_dir is not None else ""),
            "before": {"model": base_name, **comparison_metrics(before)},
            "after": {"model": name, **comparison_metrics(after)},
        },
        "weights": {"file": weights.name, "sha256": sha256_file(weights), "bytes": weights.stat().st_size},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
