"""Distillation restricted to some samples (digits.training.loop.train_one_epoch's ``distill_mask``): all
marked is the plain distillation, none marked is training on the labels alone."""

from __future__ import annotations

import copy

import torch

from digits.inference.network import DigitNet
from digits.training import loop
from digits.training.augment import Augment
from digits.training.distill import distillation_loss
from digits.training.loop import Extras
from digits.training.recipe import Recipe


def one_epoch(student: DigitNet, teacher: DigitNet | None, mask: torch.Tensor | None) -> tuple[float, dict]:
    torch.manual_seed(0)
    x = torch.rand(48, 1, 28, 28)
    y = torch.arange(48) % 10
    model = copy.deepcopy(student)
    cfg = Recipe(epochs=1, seed=3, batch_size=16, progress=False)
    opt, sched = loop.make_optimizer(model, cfg, 3)
    loss = loop.train_one_epoch(model, x, y, opt, sched, cfg, Augment(), 0, Extras(teacher=teacher, distill_mask=mask))
    return loss, model.state_dict()


def close(a: tuple[float, dict], b: tuple[float, dict]) -> bool:
    return abs(a[0] - b[0]) < 1e-5 and all(torch.allclose(a[1][k].float(), b[1][k].float(), atol=1e-5) for k in a[1])


def test_a_mask_marking_all_or_none_of_the_samples() -> None:
    torch.manual_seed(1)
    student = DigitNet(channels=(4, 8, 8, 8))
    teacher = DigitNet(channels=(4, 8, 8, 8)).eval()
    plain_kd = one_epoch(student, teacher, None)
    assert close(one_epoch(student, teacher, torch.ones(48, dtype=torch.bool)), plain_kd)
    labels_only = one_epoch(student, None, None)
    assert close(one_epoch(student, teacher, torch.zeros(48, dtype=torch.bool)), labels_only)
    half = one_epoch(student, teacher, torch.arange(48) % 2 == 0)
    assert not close(half, plain_kd) and not close(half, labels_only)


def test_per_sample_distillation_averages_to_the_batch_loss() -> None:
    s, t = torch.randn(8, 10), torch.randn(8, 10)
    per = distillation_loss(s, t, 3.0, per_sample=True)
    assert per.shape == (8,) and torch.allclose(per.mean(), distillation_loss(s, t, 3.0))
