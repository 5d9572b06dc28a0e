"""Train DigitNet on MNIST and write the weights, the model card and ``current.json``.

    python -m digits.train --data-dir ../shared/data/mnist --epochs 20 --seed 1 --out models --name cnn-v1

Model selection uses a validation split of the training part only; the test set is evaluated once,
at the end, for the model card.  A checkpoint per epoch goes to ``<out>/.ckpt/`` (not committed), and
``--resume`` continues from it.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from digits.mnist import load_split
from digits.network import DigitNet, parameter_count

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "mnist"
DEFAULT_OUT = REPO_ROOT / "models"
VERSION = "1.0.0"


@dataclass
class Config:
    data_dir: Path = DEFAULT_DATA_DIR
    out: Path = DEFAULT_OUT
    name: str = "cnn-v1"
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


@dataclass
class Augment:
    """Random affine jitter applied per image, on the fly (no torchvision)."""

    rotate_deg: float = 12.0
    scale: float = 0.12  # scale in [1 - s, 1 + s]
    shear: float = 0.15  # shear factor range [-s, s]
    translate_px: float = 2.5

    def describe(self) -> str:
        return (
            f"random affine per image via affine_grid/grid_sample: rotation ±{self.rotate_deg}°, "
            f"scale ±{self.scale:.0%}, shear ±{self.shear}, translation ±{self.translate_px} px"
        )


# --- data ---------------------------------------------------------------------------------------


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N,28,28) -> float32 (N,1,28,28) in [0, 1]."""
    return torch.from_numpy(images).float().div_(255.0).unsqueeze(1)


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): ``val_fraction`` of each class goes to validation, chosen by ``seed``."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        n_val = int(round(len(idx) * val_fraction))
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


# --- augmentation -------------------------------------------------------------------------------


def random_affine(x: torch.Tensor, aug: Augment, gen: torch.Generator) -> torch.Tensor:
    """Apply an independent random rotation/scale/shear/translation to each image of (N,1,H,W)."""
    n, _, h, _ = x.shape

    def uniform(r: float) -> torch.Tensor:
        return (torch.rand(n, generator=gen) * 2 - 1) * r

    angle = uniform(math.radians(aug.rotate_deg))
    scale = 1 + uniform(aug.scale)
    shear = uniform(aug.shear)
    shift = uniform(aug.translate_px * 2 / h), uniform(aug.translate_px * 2 / h)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # theta maps output coords to input coords: rotation/scale composed with a horizontal shear
    theta = torch.stack(
        [
            torch.stack([cos, -sin + cos * shear, shift[0]], dim=1),
            torch.stack([sin, cos + sin * shear, shift[1]], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# --- training -----------------------------------------------------------------------------------


def train_one_epoch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    cfg: Config,
    aug: Augment,
    epoch: int,
) -> float:
    """One pass over (x, y) in a seed+epoch determined order; returns the mean loss."""
    model.train()
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    order = torch.randperm(len(x), generator=gen)
    batches = range(0, len(x), cfg.batch_size)
    bar = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not cfg.progress, leave=False)
    total, count = 0.0, 0
    for start in bar:
        idx = order[start : start + cfg.batch_size]
        xb = random_affine(x[idx], aug, gen)
        loss = F.cross_entropy(model(xb), y[idx], label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += loss.item() * len(idx)
        count += len(idx)
        bar.set_postfix(loss=f"{total / count:.4f}")
    return total / max(count, 1)


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Accuracy of ``model`` (eval mode) on (x, y)."""
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        correct += int((model(x[start : start + batch_size]).argmax(1) == y[start : start + batch_size]).sum())
    return correct / max(len(x), 1)


def make_optimizer(model: nn.Module, cfg: Config, steps_per_epoch: int):
    """AdamW with a one-cycle schedule (warm-up then cosine annealing), stepped per batch."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch, pct_start=0.2
    )
    return opt, sched


def checkpoint_path(cfg: Config) -> Path:
    return Path(cfg.out) / ".ckpt" / f"{cfg.name}.pt"


def fit(
    cfg: Config,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    aug: Augment,
    log: Callable[[str], None] = print,
) -> tuple[DigitNet, float, int]:
    """Train for cfg.epochs; returns (model with the best validation weights, best val acc, best epoch)."""
    torch.manual_seed(cfg.seed)
    model = DigitNet()
    steps = math.ceil(len(train[0]) / cfg.batch_size)
    opt, sched = make_optimizer(model, cfg, steps)
    start_epoch, best_acc, best_epoch, best_state = 0, -1.0, -1, copy.deepcopy(model.state_dict())
    ckpt = checkpoint_path(cfg)
    if cfg.resume and ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start_epoch, best_acc, best_epoch, best_state = state["epoch"], state["best_acc"], state["best_epoch"], state["best"]
        log(f"resumed from {ckpt} after epoch {start_epoch}")
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        loss = train_one_epoch(model, *train, opt, sched, cfg, aug, epoch)
        acc = evaluate(model, *val)
        if acc > best_acc:
            best_acc, best_epoch, best_state = acc, epoch + 1, copy.deepcopy(model.state_dict())
        log(f"epoch {epoch + 1}/{cfg.epochs}: loss {loss:.4f}  val acc {acc:.4%}  "
            f"(best {best_acc:.4%} @ {best_epoch})  {time.perf_counter() - t0:.0f}s")
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "epoch": epoch + 1, "best_acc": best_acc, "best_epoch": best_epoch, "best": best_state}, ckpt)
    model.load_state_dict(best_state)
    return model.eval(), best_acc, best_epoch


# --- saving -------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_weights(model: nn.Module, path: Path) -> None:
    """Save the state_dict (float32) to ``path``."""
    state = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    torch.save(state, path)


def write_json(path: Path, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=2) + "\n")


def build_card(cfg: Config, model: DigitNet, weights: Path, counts: dict[str, int], metrics: dict[str, float],
               aug: Augment, wall_s: float, argv: list[str], best_epoch: int) -> dict:
    return {
        "name": cfg.name,
        "version": VERSION,
        "architecture": {
            "class": f"digits.network.{type(model).__name__}",
            "description": model.description,
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
            "validation_split": f"stratified {cfg.val_fraction:.0%} of the training part (seed {cfg.seed})",
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
            "command": shlex.join(["python", "-m", "digits.train", *argv]),
            "wall_time_s": round(wall_s, 1),
            "threads": cfg.threads,
        },
        "metrics": metrics,
        "weights": {"file": weights.name, "sha256": sha256_file(weights), "bytes": weights.stat().st_size},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


# --- command line -------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> Config:
    d = Config()
    p = argparse.ArgumentParser(prog="python -m digits.train", description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, default=d.data_dir)
    p.add_argument("--out", type=Path, default=d.out, help="models directory")
    p.add_argument("--name", default=d.name)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--val-fraction", type=float, default=d.val_fraction)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--resume", action="store_true", help="continue from <out>/.ckpt/<name>.pt")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return Config(**vars(p.parse_args(argv)))


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    cfg = parse_args(argv)
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    images, labels = load_split(cfg.data_dir, "train")
    train_idx, val_idx = stratified_split(labels, cfg.val_fraction, cfg.seed)
    x, y = to_tensor(images), torch.from_numpy(labels.astype(np.int64))
    print(f"training part: {len(images)} images -> {len(train_idx)} train, {len(val_idx)} validation")
    aug = Augment()
    model, val_acc, best_epoch = fit(cfg, (x[train_idx], y[train_idx]), (x[val_idx], y[val_idx]), aug)
    wall_s = time.perf_counter() - t0

    # The test set is looked at once, here, for the model card only.
    test_images, test_labels = load_split(cfg.data_dir, "test")
    test_acc = evaluate(model, to_tensor(test_images), torch.from_numpy(test_labels.astype(np.int64)))
    print(f"best val acc {val_acc:.4%} (epoch {best_epoch}); test acc {test_acc:.4%}; {wall_s:.0f}s")

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{cfg.name}.pt"
    save_weights(model, weights)
    counts = {"train": len(train_idx), "val": len(val_idx), "test": len(test_images)}
    metrics = {"val_accuracy": round(val_acc, 6), "test_accuracy": round(test_acc, 6)}
    card = build_card(cfg, model, weights, counts, metrics, aug, wall_s, argv, best_epoch)
    write_json(out / f"{cfg.name}.json", card)
    write_json(out / "current.json", {"model": cfg.name})
    print(f"wrote {weights} ({card['weights']['bytes']} bytes), {out / (cfg.name + '.json')}, {out / 'current.json'}")
    return card


if __name__ == "__main__":
    main()
