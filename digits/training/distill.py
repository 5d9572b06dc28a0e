"""Knowledge distillation: the student also matches the softened predictions of a trained (larger,
slower) teacher on the same augmented batches."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from digits.inference.network import fuse_for_inference
from digits.inference.predictor import load_model


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
