"""The digit classifier: a small CNN for 28x28 MNIST-style images."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


def conv_block(c_in: int, c_out: int, padding: int = 1) -> nn.Sequential:
    """3x3 conv (no bias) -> BatchNorm -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=padding, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


DEFAULT_CHANNELS = (32, 32, 48, 64)


class DigitNet(nn.Module):
    """conv(c1) - pool - conv(c2) - pool - conv(c3) - conv(c4, valid) - global avg pool - dropout - linear.

    Input: (N, 1, 28, 28) float in [0, 1], ink = 1, background = 0 (the MNIST convention).
    Output: logits (N, 10), divided by the ``temperature`` buffer (1.0 until calibrated).
    ``channels`` = (c1, c2, c3, c4), recorded in the model card. The layer sizes are chosen so that
    one image takes well under a millisecond on one CPU thread; convolutions dominate, with a large
    per-operator overhead, hence few layers and :func:`fuse_for_inference` for serving.
    """

    temperature: torch.Tensor  # a buffer (register_buffer leaves it untyped)

    def __init__(self, dropout: float = 0.25, channels: Sequence[int] = DEFAULT_CHANNELS) -> None:
        super().__init__()
        if len(channels) != 4 or min(channels) < 1:
            raise ValueError(f"channels must be four positive widths, got {channels!r}")
        self.channels = c1, c2, c3, c4 = tuple(int(c) for c in channels)
        self.features = nn.Sequential(
            conv_block(1, c1),
            nn.MaxPool2d(2),  # 14x14
            conv_block(c1, c2),
            nn.MaxPool2d(2),  # 7x7
            conv_block(c2, c3),
            conv_block(c3, c4, padding=0),  # 5x5
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(c4, 10)
        self.register_buffer("temperature", torch.ones(()))

    @property
    def description(self) -> str:
        c1, c2, c3, c4 = self.channels
        return (
            f"CNN: 3x3 conv({c1})-maxpool-conv({c2})-maxpool-conv({c3})-conv({c4}, valid), each conv BN+ReLU; "
            f"global average pool, dropout, linear({c4}->10); MNIST mean/std normalisation inside"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - MNIST_MEAN) * (1.0 / MNIST_STD)
        x = self.features(x).mean(dim=(2, 3))
        return self.classifier(self.dropout(x)) / self.temperature


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _flatten(seq: nn.Sequential) -> list[nn.Module]:
    out: list[nn.Module] = []
    for module in seq:
        out.extend(_flatten(module) if isinstance(module, nn.Sequential) else [module])
    return out


class FusedDigitNet(nn.Module):
    """Eval-only DigitNet: BatchNorm folded into the convs, channels-last, plain functional forward.

    Same outputs as ``DigitNet.eval()`` up to float rounding, with fewer operators and less Python
    dispatch per call (single-image latency is dominated by per-operator overhead).
    """

    temperature: torch.Tensor
    classifier: nn.Linear

    def __init__(self, model: DigitNet) -> None:
        super().__init__()
        convs: list[nn.Conv2d] = []
        pool_after: list[bool] = []
        for layer in _flatten(copy.deepcopy(model.features)):
            if isinstance(layer, nn.Conv2d):
                convs.append(layer)
                pool_after.append(False)
            elif isinstance(layer, nn.BatchNorm2d):
                convs[-1] = fuse_conv_bn_eval(convs[-1].eval(), layer.eval())
            elif isinstance(layer, nn.MaxPool2d) and layer.kernel_size == 2:
                pool_after[-1] = True
            elif not isinstance(layer, nn.ReLU):
                raise TypeError(f"cannot fuse layer {layer}")
        # Module.to takes memory_format at run time; torch's stubs do not list it.
        self.convs = nn.ModuleList(convs).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.pool_after = tuple(pool_after)
        self.classifier = copy.deepcopy(model.classifier)
        self.register_buffer("temperature", model.temperature.detach().clone())
        self.eval()
        # Never trained: a heat map's backward pass needs the gradient of the input, and gradients of
        # the weights beside it would cost a third of its time (1.44 -> 1.00 ms for one image).
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = ((x - MNIST_MEAN) * (1.0 / MNIST_STD)).contiguous(memory_format=torch.channels_last)
        for conv, pool in zip(self.convs, self.pool_after):
            x = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding).relu_()
            if pool:
                x = F.max_pool2d(x, 2)
        return F.linear(x.mean(dim=(2, 3)), self.classifier.weight, self.classifier.bias) / self.temperature


def fuse_for_inference(model: DigitNet) -> FusedDigitNet:
    """An eval-only copy of ``model`` for fast CPU inference (see :class:`FusedDigitNet`)."""
    return FusedDigitNet(model)
