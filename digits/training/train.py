"""Train DigitNet on MNIST and write the weights, the model card and ``current.json``.

    python -m digits.train --data-dir ../shared/data/mnist --epochs 20 --seed 1 --out models --name cnn-v1
    python -m digits.train --epochs 30 --seed 2 --name cnn-v2 --version 2.0.0 --canvas-fraction 0.5 \
        --canvas-variants 2 --elastic 0.5 --thickness 0.3
    python -m digits.train --epochs 45 --seed 2 --channels 32,64,96,128 --name cnn-v4 --version 4.0.0 \
        --canvas-fraction 0.7 --canvas-variants 3 --elastic 0.5 --thickness 0.3 --outliers 0.1
    python -m digits.train ... (cnn-v4's options) --name cnn-v6 --version 6.0.0 --teacher teacher-wide-v1
    python -m digits.train ... --epochs 90 --canvas-variants 6 --styles 0.3 --uploads 0.3 --upload-variants 2 \
        --name cnn-v16 --teacher teacher-wide-v1 --workers 2 [--device cuda]   (make train)

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

import argparse
import copy
import hashlib
import json
import math
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from digits.data.canvas_style import CACHE_DIR, build_dataset
from digits.data.mnist import load_split
from digits.inference.network import DEFAULT_CHANNELS, DigitNet, fuse_for_inference, parameter_count
from digits.inference.predictor import load_model
from digits.paths import MNIST_DIR, MODELS_DIR

DEFAULT_DATA_DIR = MNIST_DIR
DEFAULT_OUT = MODELS_DIR
VERSION = "1.0.0"


@dataclass
class Config:
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


@dataclass
class Augment:
    """Random affine jitter applied per image, on the fly (no torchvision)."""

    rotate_deg: float = 12.0
    scale: float = 0.12  # scale in [1 - s, 1 + s]
    shear: float = 0.15  # shear factor range [-s, s]
    translate_px: float = 2.5
    elastic: float = 0.0  # probability per image of an elastic distortion
    elastic_alpha: float = 1.2  # displacement scale (std per axis), px
    elastic_sigma: float = 4.0  # smoothness of the displacement field, px
    thickness: float = 0.0  # probability per image of a 3x3 dilation or erosion (half each)

    def describe(self) -> str:
        text = (
            f"random affine per image via affine_grid/grid_sample: rotation ±{self.rotate_deg}°, "
            f"scale ±{self.scale:.0%}, shear ±{self.shear}, translation ±{self.translate_px} px"
        )
        if self.elastic:
            text += f"; elastic distortion (p={self.elastic}, alpha {self.elastic_alpha} px, sigma {self.elastic_sigma} px)"
        if self.thickness:
            text += f"; stroke thickness variation (p={self.thickness}: 3x3 grey dilation or erosion via max-pool)"
        return text


# --- data ---------------------------------------------------------------------------------------


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N,28,28) -> float32 (N,1,28,28) in [0, 1]."""
    return torch.from_numpy(images).float().div_(255.0).unsqueeze(1)


def split_description(cfg: Config) -> str:
    """How the validation split was drawn, as recorded in the card (same text = same split)."""
    return f"stratified {cfg.val_fraction:.0%} of the training part (seed {cfg.seed})"


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


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    r = max(1, int(math.ceil(2.5 * sigma)))
    k = torch.exp(-(torch.arange(-r, r + 1, dtype=torch.float32) ** 2) / (2 * sigma * sigma))
    return k / k.sum()


def _affine_theta(n: int, h: int, aug: Augment, gen: torch.Generator) -> torch.Tensor:
    def uniform(r: float) -> torch.Tensor:
        return (torch.rand(n, generator=gen) * 2 - 1) * r

    angle = uniform(math.radians(aug.rotate_deg))
    scale = 1 + uniform(aug.scale)
    shear = uniform(aug.shear)
    shift = uniform(aug.translate_px * 2 / h), uniform(aug.translate_px * 2 / h)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    return torch.stack(
        [
            torch.stack([cos, -sin + cos * shear, shift[0]], dim=1),
            torch.stack([sin, cos + sin * shear, shift[1]], dim=1),
        ],
        dim=1,
    )


def elastic_field(n: int, h: int, w: int, aug: Augment, gen: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
    """(n, h, w, 2) smooth random displacements in normalised grid units (|d| ~ alpha px), on ``device``
    (drawn from the CPU generator ``gen`` either way)."""
    noise = (torch.rand(n * 2, 1, h, w, generator=gen) * 2 - 1).to(device)
    k = _gaussian_kernel(aug.elastic_sigma).to(device)
    pad = len(k) // 2
    noise = F.conv2d(F.pad(noise, (pad, pad, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    noise = F.conv2d(F.pad(noise, (0, 0, pad, pad), mode="reflect"), k.view(1, 1, -1, 1))
    noise = noise / noise.flatten(1).std(dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)
    field = noise.view(n, 2, h, w).permute(0, 2, 3, 1) * aug.elastic_alpha
    return field * torch.tensor([2.0 / w, 2.0 / h], device=device)


def thickness_jitter(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """With probability p per image, thicken or thin its strokes: a blend, of random strength in
    [0.3, 1], towards the 3x3 grey dilation (max-pool) or erosion (min-pool). An erosion that would
    remove more than half of the ink is not applied (thin digits must stay readable)."""
    n = len(x)
    u = torch.rand(n, generator=gen).to(x.device)
    strength = (0.3 + 0.7 * torch.rand(n, generator=gen)).view(n, 1, 1, 1).to(x.device)
    dil, ero = u < p / 2, (u >= p / 2) & (u < p)
    if not (dil.any() or ero.any()):
        return x
    thick = F.max_pool2d(x, 3, stride=1, padding=1)
    thin = -F.max_pool2d(-x, 3, stride=1, padding=1)
    target = torch.where(dil.view(n, 1, 1, 1), thick, thin)
    ink = x.flatten(1).sum(dim=1)
    ok_thin = thin.flatten(1).sum(dim=1) * (strength.flatten()) + ink * (1 - strength.flatten()) > 0.5 * ink
    apply = (dil | (ero & ok_thin)).float().view(n, 1, 1, 1)
    out = x + apply * strength * (target - x)
    # erosion dims thin strokes' centres: restore each image's peak ink level
    peak_in, peak_out = x.amax(dim=(1, 2, 3), keepdim=True), out.amax(dim=(1, 2, 3), keepdim=True)
    return (out * (peak_in / peak_out.clamp_min(1e-6))).clamp_(0.0, 1.0)


def augment(x: torch.Tensor, aug: Augment, gen: torch.Generator) -> torch.Tensor:
    """Thickness variation, then one resampling that composes the random affine map with an
    elastic distortion (for a random subset), on (N,1,H,W) in [0, 1], wherever x lives (the random
    draws come from the CPU generator ``gen``, so a GPU run draws the same numbers)."""
    if aug.thickness:
        x = thickness_jitter(x, aug.thickness, gen)
    n, _, h, w = x.shape
    grid = F.affine_grid(_affine_theta(n, h, aug, gen).to(x.device), list(x.shape), align_corners=False)
    if aug.elastic:
        mask = (torch.rand(n, generator=gen) < aug.elastic).float().view(n, 1, 1, 1).to(x.device)
        grid = grid + elastic_field(n, h, w, aug, gen, x.device) * mask
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp_(0.0, 1.0)


def random_affine(x: torch.Tensor, aug: Augment, gen: torch.Generator) -> torch.Tensor:
    """Apply an independent random rotation/scale/shear/translation to each image of (N,1,H,W)."""
    n, _, h, _ = x.shape
    grid = F.affine_grid(_affine_theta(n, h, aug, gen), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# --- training -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Styled:
    """Styled copies for training: ``images`` (M, 1, 28, 28); sample ``i``'s copies are
    ``images[first[i] : first[i] + count[i]]`` (count 0: none)."""

    images: torch.Tensor
    first: torch.Tensor
    count: torch.Tensor

    @classmethod
    def from_pool(cls, images: np.ndarray, source: np.ndarray, n: int) -> Styled:
        order = np.argsort(source, kind="stable")
        count = np.bincount(source, minlength=n)
        first = np.concatenate([[0], np.cumsum(count)[:-1]])
        return cls(to_tensor(images[order]), torch.from_numpy(first.astype(np.int64)), torch.from_numpy(count.astype(np.int64)))


def _stand_in(
    xb: torch.Tensor, idx: torch.Tensor, copies: torch.Tensor, p: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch ``xb`` (samples ``idx``) with each sample replaced, with probability ``p``, by one of
    its ``copies`` (V, N, 1, 28, 28) chosen at random; and which ones were."""
    use = torch.rand(len(idx), generator=gen) < p
    variant = torch.randint(0, copies.shape[0], (len(idx),), generator=gen)
    if use.any():
        xb = xb.clone()
        xb[use] = copies[variant[use], idx[use]]
    return xb, use


def train_one_epoch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    cfg: Config,
    aug: Augment,
    epoch: int,
    canvas: torch.Tensor | None = None,
    outliers: torch.Tensor | None = None,
    teacher: nn.Module | None = None,
    distill_mask: torch.Tensor | None = None,
    styled: Styled | None = None,
    uploads: torch.Tensor | None = None,
) -> float:
    """One pass over (x, y) in a seed+epoch determined order; returns the mean loss.

    ``canvas`` (V, N, 1, 28, 28): canvas-style copies of x; each sample is replaced by one of its
    copies (chosen at random) with probability ``cfg.canvas_fraction``. ``outliers`` (M, 1, 28, 28):
    synthetic non-digits; ``cfg.outliers * batch`` of them join each batch with a uniform target
    (outlier exposure: the model learns to spread its probability on things that are not digits).
    ``teacher``: a model whose softened predictions on the same augmented digits the student also
    matches (knowledge distillation, :func:`distillation_loss`); with ``distill_mask`` (N,) bool only
    the samples it marks do, the others learn from their labels alone (samples the teacher was never
    shown the like of, such as :mod:`digits.data.stroke_styles` copies).
    ``uploads`` (U, N, 1, 28, 28): upload renditions of x, standing in for a sample with probability
    ``cfg.uploads``; ``styled``: copies of x's 1s, 4s, 5s and 7s with writing styles MNIST lacks, standing
    in for such a sample with probability ``cfg.styles``. Neither is matched to the teacher (it never saw
    their like) unless ``cfg.distill_all``. Batches go to the model's device before augmentation.
    """
    model.train()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    order = torch.randperm(len(x), generator=gen)
    batches = range(0, len(x), cfg.batch_size)
    bar = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not cfg.progress, leave=False)
    total, count = 0.0, 0
    for start in bar:
        idx = order[start : start + cfg.batch_size]
        xb = x[idx]
        if canvas is not None and cfg.canvas_fraction > 0:
            xb, _ = _stand_in(xb, idx, canvas, cfg.canvas_fraction, gen)
        unseen = torch.zeros(len(idx), dtype=torch.bool)  # samples the teacher never saw the like of
        if uploads is not None and cfg.uploads > 0:
            xb, up = _stand_in(xb, idx, uploads, cfg.uploads, gen)
            unseen |= up
        if styled is not None and cfg.styles > 0:
            n_copies = styled.count[idx]
            st = (n_copies > 0) & (torch.rand(len(idx), generator=gen) < cfg.styles)
            pick = styled.first[idx] + (torch.rand(len(idx), generator=gen) * n_copies).long()
            if st.any():
                xb = xb.clone()
                xb[st] = styled.images[pick[st]]
                unseen |= st
        n_out = int(round(len(idx) * cfg.outliers)) if outliers is not None else 0
        if outliers is not None and n_out:
            xb = torch.cat([xb, outliers[torch.randint(0, len(outliers), (n_out,), generator=gen)]])
        xb = augment(xb.to(device, non_blocking=True), aug, gen)
        yb = y[idx].to(device, non_blocking=True)
        logits = model(xb)
        loss = F.cross_entropy(logits[: len(idx)], yb, label_smoothing=cfg.label_smoothing)
        if teacher is not None:
            with torch.no_grad():
                target = teacher(xb[: len(idx)])
            learn = torch.ones(len(idx), dtype=torch.bool) if distill_mask is None else distill_mask[idx]
            if not cfg.distill_all:
                learn = learn & ~unseen
            if bool(learn.all()):
                kd = distillation_loss(logits[: len(idx)], target, cfg.distill_temperature)
                loss = (1 - cfg.distill_weight) * loss + cfg.distill_weight * kd
            else:
                ce = F.cross_entropy(logits[: len(idx)], yb, label_smoothing=cfg.label_smoothing, reduction="none")
                kd = distillation_loss(logits[: len(idx)], target, cfg.distill_temperature, per_sample=True)
                w = cfg.distill_weight * learn.to(device).float()
                loss = ((1 - w) * ce + w * kd).mean()
        if n_out:
            loss = loss - cfg.outlier_weight * F.log_softmax(logits[len(idx) :], dim=1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += loss.item() * len(idx)
        count += len(idx)
        bar.set_postfix(loss=f"{total / count:.4f}")
    return total / max(count, 1)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float, per_sample: bool = False) -> torch.Tensor:
    """KL(teacher || student) of the logits softened by ``temperature``, times temperature**2
    (Hinton et al. 2015: keeps its gradients on the scale of the cross-entropy's); the batch mean,
    or with ``per_sample`` one value per sample."""
    t = temperature
    if per_sample:
        return F.kl_div(
            F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1), reduction="none", log_target=True
        ).sum(dim=1) * (t * t)
    return F.kl_div(
        F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1), reduction="batchmean", log_target=True
    ) * (t * t)


def load_teacher(models_dir: Path, name: str) -> tuple[nn.Module, dict]:
    """An eval-only copy of a trained model giving raw logits (temperature 1), and its card."""
    _, card, model = load_model(models_dir, name)
    model.temperature.fill_(1.0)
    return fuse_for_inference(model), card


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Accuracy of ``model`` (eval mode) on (x, y)."""
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, len(x), batch_size):
        predicted = model(x[start : start + batch_size].to(device)).argmax(1).cpu()
        correct += int((predicted == y[start : start + batch_size]).sum())
    return correct / max(len(x), 1)


@torch.no_grad()
def logits_of(model: DigitNet, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits of ``model`` (eval mode) at temperature 1."""
    model.eval()
    t = model.temperature.clone()
    model.temperature.fill_(1.0)
    try:
        device = next(model.parameters()).device
        return torch.cat([model(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])
    finally:
        model.temperature.copy_(t)


def fit_temperature(logits: torch.Tensor, y: torch.Tensor) -> float:
    """The softmax temperature minimising the negative log-likelihood of (logits, y)."""
    logits = logits.detach().clone()
    log_t = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def ece_of(logits: torch.Tensor, y: torch.Tensor, temperature: float = 1.0) -> float:
    from digits.evaluation.evaluate import expected_calibration_error

    probs = torch.softmax(logits.double() / temperature, dim=1).numpy()
    return expected_calibration_error(probs, y.numpy())


def make_optimizer(
    model: nn.Module, cfg: Config, steps_per_epoch: int
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW with a one-cycle schedule (warm-up then cosine annealing), stepped per batch; with
    ``cfg.swa`` a constant rate (the averaging of weights does the annealing's work)."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.swa:
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
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
    canvas: torch.Tensor | None = None,
    canvas_val: torch.Tensor | None = None,
    outliers: torch.Tensor | None = None,
    teacher: nn.Module | None = None,
    styled: Styled | None = None,
    uploads: torch.Tensor | None = None,
) -> tuple[DigitNet, float, int]:
    """Train for cfg.epochs; returns (model with the best validation weights, best score, best epoch).

    The score is the validation accuracy, or with ``canvas_val`` (canvas-style copies of the
    validation images) the mean of the accuracies on both. With ``cfg.swa`` nothing is chosen: the
    model is the average of the weights (and BatchNorm statistics) after every epoch of the run
    (stochastic weight averaging), scored after each epoch for the log.
    """
    torch.manual_seed(cfg.seed)
    model = DigitNet(channels=cfg.channels).to(cfg.device)
    if cfg.init:
        _, _, start = load_model(cfg.teacher_dir, cfg.init)
        model.load_state_dict(start.state_dict())
        model.temperature.fill_(1.0)  # trained on raw logits; calibrated again at the end
    steps = math.ceil(len(train[0]) / cfg.batch_size)
    opt, sched = make_optimizer(model, cfg, steps)
    average = AveragedModel(model, use_buffers=True) if cfg.swa else None
    start_epoch, best_acc, best_epoch, best_state = 0, -1.0, -1, copy.deepcopy(model.state_dict())
    ckpt = checkpoint_path(cfg)
    if cfg.resume and cfg.swa:
        raise ValueError("--resume does not keep the running average of --swa")
    if cfg.resume and ckpt.exists():
        state = torch.load(ckpt, weights_only=False, map_location=cfg.device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start_epoch, best_acc, best_epoch, best_state = state["epoch"], state["best_acc"], state["best_epoch"], state["best"]
        log(f"resumed from {ckpt} after epoch {start_epoch}")
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        loss = train_one_epoch(
            model, *train, opt, sched, cfg, aug, epoch, canvas, outliers, teacher, styled=styled, uploads=uploads
        )
        scored: nn.Module = model
        if average is not None:
            average.update_parameters(model)
            scored = average.module
        acc = evaluate(scored, *val)
        score, extra = acc, ""
        if canvas_val is not None:
            c_acc = evaluate(scored, canvas_val, val[1])
            score, extra = (acc + c_acc) / 2, f"  canvas val acc {c_acc:.4%}"
        if score > best_acc or average is not None:  # an average is kept whole, never chosen by epoch
            best_acc, best_epoch, best_state = score, epoch + 1, copy.deepcopy(scored.state_dict())
        log(
            f"epoch {epoch + 1}/{cfg.epochs}: loss {loss:.4f}  val acc {acc:.4%}{extra}  "
            f"(best {best_acc:.4%} @ {best_epoch})  {time.perf_counter() - t0:.0f}s"
        )
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "epoch": epoch + 1,
                "best_acc": best_acc,
                "best_epoch": best_epoch,
                "best": best_state,
            },
            ckpt,
        )
    model.load_state_dict(best_state)
    return model.cpu().eval(), best_acc, best_epoch


# --- saving -------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_weights(model: nn.Module, path: Path) -> None:
    """Save the state_dict (float32) to ``path``."""
    state = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    torch.save(state, path)


def write_json(path: Path, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=2) + "\n")


def build_card(
    cfg: Config,
    model: DigitNet,
    weights: Path,
    counts: dict[str, int],
    metrics: dict[str, float],
    aug: Augment,
    wall_s: float,
    argv: list[str],
    best_epoch: int,
    calibration: dict | None = None,
) -> dict:
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
            "validation_split": split_description(cfg),
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
        from digits.inference.refusal import TRAIN_LETTERS

        card["data"]["outlier_exposure"] = (
            f"{cfg.outlier_count} synthetic non-digits (digits.inference.refusal.synthetic_non_digits: scribbles, filled "
            f"blobs, letters {', '.join(TRAIN_LETTERS)}); "
            f"{cfg.outliers:.0%} of a batch, loss weight {cfg.outlier_weight} x cross-entropy to uniform"
        )
    if cfg.styles > 0:
        from digits.data.stroke_styles import describe
        from digits.training.finetune import STYLE_SEED

        card["data"]["stroke_styles"] = describe(cfg.styles, cfg.style_variants) + f" (seed {STYLE_SEED + cfg.seed})"
    if cfg.uploads > 0:
        from digits.data import upload_renditions

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
    return card


# --- command line -------------------------------------------------------------------------------


def _channels(text: str) -> tuple[int, int, int, int]:
    widths = tuple(int(c) for c in text.split(","))
    if len(widths) != 4:
        raise argparse.ArgumentTypeError("four comma-separated widths, e.g. 32,64,96,128")
    return widths


def parse_args(argv: list[str]) -> Config:
    d = Config()
    p = argparse.ArgumentParser(prog="python -m digits.train", description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, default=d.data_dir)
    p.add_argument("--out", type=Path, default=d.out, help="models directory")
    p.add_argument("--name", default=d.name)
    p.add_argument("--channels", type=_channels, default=d.channels, help="DigitNet widths c1,c2,c3,c4")
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
    p.add_argument("--version", default=d.version, help="model version recorded in the card")
    p.add_argument(
        "--canvas-fraction",
        type=float,
        default=d.canvas_fraction,
        help="probability that a training sample is replaced by a canvas-style copy",
    )
    p.add_argument("--canvas-variants", type=int, default=d.canvas_variants)
    p.add_argument("--elastic", type=float, default=d.elastic, help="probability of elastic distortion")
    p.add_argument("--thickness", type=float, default=d.thickness, help="probability of dilation/erosion")
    p.add_argument("--no-calibrate", dest="calibrate", action="store_false")
    p.add_argument("--cache-dir", type=Path, default=d.cache_dir, help="canvas-style data cache")
    p.add_argument(
        "--outliers",
        type=float,
        default=d.outliers,
        help="synthetic non-digits per batch as a share of it (outlier exposure; 0 = off)",
    )
    p.add_argument("--outlier-weight", type=float, default=d.outlier_weight)
    p.add_argument("--outlier-count", type=int, default=d.outlier_count)
    p.add_argument(
        "--no-set-current",
        dest="set_current",
        action="store_false",
        help="do not point current.json at the new model (compare it first)",
    )
    p.add_argument("--teacher", default=d.teacher, help="distil from this trained model (knowledge distillation)")
    p.add_argument("--teacher-dir", type=Path, default=d.teacher_dir, help="where the teacher's card is")
    p.add_argument("--distill-weight", type=float, default=d.distill_weight)
    p.add_argument("--distill-temperature", type=float, default=d.distill_temperature)
    p.add_argument(
        "--styles",
        type=float,
        default=d.styles,
        help="probability that a 1, 4, 5 or 7 is replaced by a styled copy (digits.data.stroke_styles)",
    )
    p.add_argument("--style-variants", type=int, default=d.style_variants)
    p.add_argument(
        "--uploads",
        type=float,
        default=d.uploads,
        help="probability that a sample is replaced by an upload rendition (digits.data.upload_renditions)",
    )
    p.add_argument("--upload-variants", type=int, default=d.upload_variants)
    p.add_argument(
        "--distill-all",
        action="store_true",
        help="match the teacher on styled copies and upload renditions too (a teacher trained with them)",
    )
    p.add_argument("--workers", type=int, default=d.workers, help="processes that build the copies")
    p.add_argument("--device", default=d.device, help='where the network trains: "cpu" or "cuda"')
    p.add_argument("--init", default=d.init, help="start from this trained model's weights (its card in --teacher-dir)")
    p.add_argument(
        "--swa", action="store_true", help="constant learning rate; the model is the average of the weights after each epoch"
    )
    return Config(**vars(p.parse_args(argv)))


def canvas_copies(images: np.ndarray, cfg: Config, seed: int, variants: int, desc: str, mode: str = "random") -> torch.Tensor:
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
        from digits.evaluation.evaluate import VAL_SEED

        canvas = canvas_copies(images[train_idx], cfg, 1000 + cfg.seed, cfg.canvas_variants, "canvas-style train")
        # the same canvas-style validation set that `evaluate` reports (grid of brushes/sizes/places)
        canvas_val = canvas_copies(images[val_idx], cfg, VAL_SEED, 1, "canvas-style val", mode="grid")[0]
    outliers = None
    if cfg.outliers > 0:
        from digits.inference.refusal import synthetic_non_digits

        outliers = torch.from_numpy(synthetic_non_digits(cfg.outlier_count, seed=cfg.seed)[0]).unsqueeze(1)
        print(f"outlier exposure: {len(outliers)} synthetic non-digits (scribbles, blobs, letters)")
    styled = None
    if cfg.styles > 0:
        from digits.data.stroke_styles import build_pool
        from digits.training.finetune import STYLE_SEED  # the same copies (and cache) as the styles fine-tune's

        pool = build_pool(
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
        from digits.data import upload_renditions

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
        if teacher_card["data"].get("validation_split") != split_description(cfg):
            # the teacher must not have seen the student's validation images
            raise SystemExit(f"teacher {cfg.teacher} was selected on another validation split; use its seed")
        print(f"distilling from {cfg.teacher} (weight {cfg.distill_weight}, temperature {cfg.distill_temperature})")
    if teacher is not None:
        teacher = teacher.to(cfg.device)
    init_card = None
    if cfg.init:
        _, init_card, _ = load_model(cfg.teacher_dir, cfg.init)
        if init_card["data"].get("validation_split") != split_description(cfg):
            raise SystemExit(f"{cfg.init} was selected on another validation split; use its seed")
        print(f"starting from {cfg.init}'s weights" + (", averaging the weights after each epoch" if cfg.swa else ""))
    model, score, best_epoch = fit(
        cfg,
        (x[train_idx], y[train_idx]),
        (x[val_idx], y[val_idx]),
        aug,
        canvas=canvas,
        canvas_val=canvas_val,
        outliers=outliers,
        teacher=teacher,
        styled=styled,
        uploads=uploads,
    )
    val_acc = evaluate(model, x[val_idx], y[val_idx])

    calibration = None
    if cfg.calibrate:
        # Temperature scaling on the validation split (plus its canvas-style copies when used).
        xv, yv = x[val_idx], y[val_idx]
        if canvas_val is not None:
            xv, yv = torch.cat([xv, canvas_val]), torch.cat([yv, yv])
        logits = logits_of(model, xv)
        temperature = fit_temperature(logits, yv)
        model.temperature.fill_(temperature)
        calibration = {
            "method": "temperature scaling (NLL, LBFGS) on the validation split"
            + (" and its canvas-style copies" if canvas_val is not None else ""),
            "temperature": round(temperature, 6),
            "val_ece_before": round(ece_of(logits, yv), 6),
            "val_ece_after": round(ece_of(logits, yv, temperature), 6),
        }
        print(
            f"temperature {temperature:.4f}: validation ECE {calibration['val_ece_before']:.2%} -> "
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
    card = build_card(cfg, model, weights, counts, metrics, aug, wall_s, argv, best_epoch, calibration)
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
