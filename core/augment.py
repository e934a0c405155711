"""Batch augmentation for CT slices, on tensors (no per-image Python loop).

Small geometric jitter (rotation +-10 deg, scale 0.9-1.1, shift +-6%), left-right flips, and a mild
window jitter (contrast/brightness), the changes a slice undergoes between scanners and papers.
Vertical flips are left out: anatomy is not up-down symmetric.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment_batch(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """x: (B, C, H, W) float in [0, 1]. Randomness comes only from `gen` (reproducible resumes)."""
    b = x.shape[0]
    r = lambda lo, hi: torch.rand(b, generator=gen) * (hi - lo) + lo
    angle = r(-10, 10) * math.pi / 180
    scale = r(0.9, 1.1)
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    tx, ty = r(-0.06, 0.06), r(-0.06, 0.06)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid.to(x.device), mode="bilinear", padding_mode="zeros", align_corners=False)
    contrast = r(0.85, 1.15).view(b, 1, 1, 1).to(x.device)
    bright = r(-0.06, 0.06).view(b, 1, 1, 1).to(x.device)
    return ((x - 0.5) * contrast + 0.5 + bright).clamp(0, 1)
