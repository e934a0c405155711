"""Batch augmentation for CT slices, on tensors (no per-image Python loop).

"light": left-right flips, rotation +-10 deg, scale 0.9-1.1, shift +-6%, mild contrast/brightness.
"strong": rotation +-15 deg, scale 0.8-1.25, shift +-10%, contrast 0.75-1.25, brightness +-0.1,
gamma 0.7-1.4 and Gaussian noise: the changes a slice undergoes between scanners, windows and the
papers COVID-CT's slices were cut from, so the network has less room to learn the source.
Vertical flips are left out: anatomy is not up-down symmetric.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

STRENGTH = {
    "light": dict(rot=10, scale=(0.9, 1.1), shift=0.06, contrast=(0.85, 1.15), bright=0.06, gamma=(1.0, 1.0), noise=0.0),
    "strong": dict(rot=15, scale=(0.8, 1.25), shift=0.10, contrast=(0.75, 1.25), bright=0.10, gamma=(0.7, 1.4), noise=0.03),
}


def augment_batch(x: torch.Tensor, gen: torch.Generator, strength: str = "light") -> torch.Tensor:
    """x: (B, C, H, W) float in [0, 1]. Randomness comes only from `gen` (reproducible resumes)."""
    if strength == "none":
        return x
    a = STRENGTH[strength]
    b = x.shape[0]
    r = lambda lo, hi: torch.rand(b, generator=gen) * (hi - lo) + lo
    angle = r(-a["rot"], a["rot"]) * math.pi / 180
    scale = r(*a["scale"])
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    tx, ty = r(-a["shift"], a["shift"]), r(-a["shift"], a["shift"])
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid.to(x.device), mode="bilinear", padding_mode="zeros", align_corners=False)
    col = lambda v: v.view(b, 1, 1, 1).to(x.device, x.dtype)
    x = x.clamp(0, 1) ** col(r(*a["gamma"]))
    x = (x - 0.5) * col(r(*a["contrast"])) + 0.5 + col(r(-a["bright"], a["bright"]))
    if a["noise"]:
        sigma = col(r(0, a["noise"]))
        x = x + sigma * torch.randn(x.shape, generator=gen).to(x.device, x.dtype)
    return x.clamp(0, 1)
