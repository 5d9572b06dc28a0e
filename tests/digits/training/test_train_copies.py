"""What stands in for a training sample (digits.training.loop.train_one_epoch): upload renditions and styled
copies replace samples at their rates, and learn from their labels alone unless ``distill_all``."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from digits.inference.network import DigitNet
from digits.training import loop
from digits.training.augment import Augment
from digits.training.loop import Extras, Styled
from digits.training.recipe import Recipe

N = 12
IDENTITY = Augment(rotate_deg=0.0, scale=0.0, shear=0.0, translate_px=0.0)


class Recorder(nn.Module):
    """A linear model that keeps every batch it is shown."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(28 * 28, 10)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.fc(x.flatten(1))


def constant_images(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(values.astype(np.float32)).view(-1, 1, 1, 1).expand(-1, 1, 28, 28).clone()


def shown(cfg: Recipe, styled: Styled | None, uploads: torch.Tensor | None) -> np.ndarray:
    """The constant value of each input the model was shown, in order."""
    model = Recorder()
    opt, sched = loop.make_optimizer(model, cfg, 2)
    x, y = torch.zeros(N, 1, 28, 28), torch.arange(N) % 10
    loop.train_one_epoch(model, x, y, opt, sched, cfg, IDENTITY, 0, Extras(styled=styled, uploads=uploads))
    batches = torch.cat(model.seen)
    assert torch.allclose(batches, batches[:, :, 14:15, 14:15].expand_as(batches), atol=1e-5)
    return batches[:, 0, 14, 14].numpy()


def test_uploads_and_styled_copies_stand_in_for_samples() -> None:
    uploads = constant_images(0.3 + np.arange(N) / 100).unsqueeze(0)  # (1, N, 1, 28, 28)
    # styled copies of the even samples only: two of each, 0.7 + i/100 and 0.71 + i/100
    source = np.repeat(np.arange(0, N, 2), 2)
    styled = Styled.from_pool(
        np.rint((0.7 + source / 100 + np.tile([0, 0.01], N // 2)) * 255).astype(np.uint8).repeat(784).reshape(-1, 28, 28),
        source,
        N,
    )
    assert styled.count.tolist() == [2, 0] * (N // 2)
    cfg = Recipe(epochs=1, seed=3, batch_size=8, progress=False, uploads=1.0, styles=1.0)
    values = shown(cfg, styled, uploads)
    assert len(values) == N
    styled_shown = values[values > 0.65]
    upload_shown = values[(values > 0.25) & (values < 0.45)]
    assert len(styled_shown) == N // 2 and len(upload_shown) == N // 2  # every even one styled, every odd uploaded
    assert sorted(np.rint((upload_shown - 0.3) * 100).astype(int)) == list(range(1, N, 2))
    # at lower rates some samples stay themselves (0); nothing but the three kinds is shown
    cfg = Recipe(epochs=1, seed=3, batch_size=8, progress=False, uploads=0.5, styles=0.5)
    values = shown(cfg, styled, uploads)
    assert (values == 0).any() and (values > 0.25).any()
    assert np.all((values == 0) | ((values > 0.25) & (values < 0.45)) | (values > 0.65))
    # off: the samples themselves
    assert np.all(shown(Recipe(epochs=1, seed=3, batch_size=8, progress=False), styled, uploads) == 0)


def test_copies_learn_from_their_labels_alone_unless_distill_all() -> None:
    torch.manual_seed(1)
    student = DigitNet(channels=(4, 8, 8, 8))
    teacher = DigitNet(channels=(4, 8, 8, 8)).eval()
    uploads = torch.rand(1, 48, 1, 28, 28)

    def epoch(teacher_: DigitNet | None, distill_all: bool) -> dict:
        torch.manual_seed(0)
        model = copy.deepcopy(student)
        cfg = Recipe(epochs=1, seed=3, batch_size=16, progress=False, uploads=1.0, distill_all=distill_all)
        opt, sched = loop.make_optimizer(model, cfg, 3)
        x, y = torch.rand(48, 1, 28, 28), torch.arange(48) % 10
        loop.train_one_epoch(model, x, y, opt, sched, cfg, Augment(), 0, Extras(teacher=teacher_, uploads=uploads))
        return model.state_dict()

    def same(a: dict, b: dict) -> bool:
        return all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)

    labels_only = epoch(None, False)
    assert same(epoch(teacher, False), labels_only)  # every sample was an upload: the teacher is not asked
    assert not same(epoch(teacher, True), labels_only)  # distill_all: it is
