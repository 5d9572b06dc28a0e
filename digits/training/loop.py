"""The training loop: one epoch over the augmented batches (with canvas-style copies, styled copies,
upload renditions, synthetic non-digits and a teacher mixed in as the recipe says), the optimiser and
its schedule, and :func:`fit`, which trains, checkpoints each epoch and keeps the best weights."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from digits.inference.network import DigitNet
from digits.inference.predictor import load_model
from digits.training.augment import Augment, augment, to_tensor
from digits.training.distill import distillation_loss
from digits.training.recipe import Recipe


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


@dataclass(frozen=True)
class Extras:
    """What an epoch mixes into the batches of (x, y), each optional (see :func:`train_one_epoch`)."""

    canvas: torch.Tensor | None = None  # (V, N, 1, 28, 28) canvas-style copies of x
    outliers: torch.Tensor | None = None  # (M, 1, 28, 28) synthetic non-digits
    teacher: nn.Module | None = None  # distil from it (digits.training.distill)
    distill_mask: torch.Tensor | None = None  # (N,) bool: the samples matched to the teacher
    styled: Styled | None = None  # styled copies of x's 1s, 4s, 5s and 7s
    uploads: torch.Tensor | None = None  # (U, N, 1, 28, 28) upload renditions of x


NO_EXTRAS = Extras()


def train_one_epoch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    cfg: Recipe,
    aug: Augment,
    epoch: int,
    extras: Extras = NO_EXTRAS,
) -> float:
    """One pass over (x, y) in a seed+epoch determined order; returns the mean loss.

    ``extras``: what joins the batches (:class:`Extras`). ``canvas`` (V, N, 1, 28, 28): canvas-style
    copies of x; each sample is replaced by one of its copies (chosen at random) with probability
    ``cfg.canvas_fraction``. ``outliers`` (M, 1, 28, 28): synthetic non-digits; ``cfg.outliers * batch``
    of them join each batch with a uniform target (outlier exposure: the model learns to spread its
    probability on things that are not digits). ``teacher``: a model whose softened predictions on the
    same augmented digits the student also matches (knowledge distillation,
    :func:`digits.training.distill.distillation_loss`); with ``distill_mask`` (N,) bool only the
    samples it marks do, the others learn from their labels alone (samples the teacher was never shown
    the like of, such as :mod:`digits.data.stroke_styles` copies). ``uploads`` (U, N, 1, 28, 28): upload
    renditions of x, standing in for a sample with probability ``cfg.uploads``; ``styled``: copies of
    x's 1s, 4s, 5s and 7s with writing styles MNIST lacks, standing in for such a sample with
    probability ``cfg.styles``. Neither is matched to the teacher (it never saw their like) unless
    ``cfg.distill_all``. Batches go to the model's device before augmentation.
    """
    canvas, outliers, teacher, distill_mask = extras.canvas, extras.outliers, extras.teacher, extras.distill_mask
    styled, uploads = extras.styled, extras.uploads
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
        n_out = round(len(idx) * cfg.outliers) if outliers is not None else 0
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


def make_optimizer(
    model: nn.Module, cfg: Recipe, steps_per_epoch: int
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


def checkpoint_path(cfg: Recipe) -> Path:
    return Path(cfg.out) / ".ckpt" / f"{cfg.name}.pt"


def fit(
    cfg: Recipe,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    aug: Augment,
    log: Callable[[str], None] = print,
    extras: Extras = NO_EXTRAS,
    canvas_val: torch.Tensor | None = None,
) -> tuple[DigitNet, float, int]:
    """Train for cfg.epochs; returns (model with the best validation weights, best score, best epoch).

    ``extras``: what joins the training batches (:func:`train_one_epoch`; its ``distill_mask`` unused).
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
        loss = train_one_epoch(model, *train, opt, sched, cfg, aug, epoch, extras)
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
