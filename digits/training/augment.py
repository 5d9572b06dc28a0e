"""Random augmentation of training batches, per image and on the fly (no torchvision): affine
jitter, elastic distortion and stroke thickness variation, drawn from a CPU generator so that a GPU
run draws the same numbers as a CPU one."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


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


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N,28,28) -> float32 (N,1,28,28) in [0, 1]."""
    return torch.from_numpy(images).float().div_(255.0).unsqueeze(1)


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    r = max(1, math.ceil(2.5 * sigma))
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
