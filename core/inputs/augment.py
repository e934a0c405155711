"""Batch augmentation for CT slices, on tensors.

"light": left-right flips, rotation +-10 deg, scale 0.9-1.1, shift +-6%, mild contrast/brightness.
"strong": rotation +-15 deg, scale 0.8-1.25, shift +-10%, contrast 0.75-1.25, brightness +-0.1,
gamma 0.7-1.4 and Gaussian noise: the changes a slice undergoes between scanners, windows and the
papers COVID-CT's slices were cut from, so the network has less room to learn the source.
"harmonise": "strong" plus what destroys a source's fingerprint: random resolution loss (down to a
third of the side and back), Gaussian blur, JPEG re-encoding at a random quality. Each of these
hits half the slices.
Vertical flips are left out: anatomy is not up-down symmetric.

Masks (lung field, lesions) given with an image follow its geometric changes only.
"""
from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

STRENGTH = {
    "light": dict(rot=10, scale=(0.9, 1.1), shift=0.06, contrast=(0.85, 1.15), bright=0.06, gamma=(1.0, 1.0), noise=0.0),
    "strong": dict(rot=15, scale=(0.8, 1.25), shift=0.10, contrast=(0.75, 1.25), bright=0.10, gamma=(0.7, 1.4), noise=0.03),
}
STRENGTH["harmonise"] = dict(STRENGTH["strong"], resolution=(0.33, 1.0), blur=(0.0, 1.5), jpeg=(20, 90))
SOURCE_P = 0.5  # share of slices that get each source-destroying change
STRENGTHS = ("none", *STRENGTH)


def augment_batch(x: torch.Tensor, gen: torch.Generator, strength: str = "light") -> torch.Tensor:
    """x: (B, C, H, W) float in [0, 1]. Randomness comes only from `gen` (reproducible resumes)."""
    return augment_with_masks(x, gen, strength)[0]


def augment_with_masks(x: torch.Tensor, gen: torch.Generator, strength: str = "light",
                       masks: tuple[torch.Tensor, ...] = ()) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """augment_batch, with (B, 1, H, W) float masks moved by the same geometric change. Returns (x, masks)."""
    if strength == "none":
        return x, list(masks)
    a = STRENGTH[strength]
    b = x.shape[0]
    r = lambda lo, hi: torch.rand(b, generator=gen) * (hi - lo) + lo
    angle = r(-a["rot"], a["rot"]) * math.pi / 180
    scale = r(*a["scale"])
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    tx, ty = r(-a["shift"], a["shift"]), r(-a["shift"], a["shift"])
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False).to(x.device)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    masks = [F.grid_sample(m, grid.to(m.dtype), mode="nearest", padding_mode="zeros", align_corners=False)
             for m in masks]
    col = lambda v: v.view(b, 1, 1, 1).to(x.device, x.dtype)
    x = x.clamp(0, 1) ** col(r(*a["gamma"]))
    x = (x - 0.5) * col(r(*a["contrast"])) + 0.5 + col(r(-a["bright"], a["bright"]))
    if a["noise"]:
        sigma = col(r(0, a["noise"]))
        x = x + sigma * torch.randn(x.shape, generator=gen).to(x.device, x.dtype)
    x = x.clamp(0, 1)
    if "resolution" in a:
        x = _source_changes(x, gen, a)
    return x, masks


def _source_changes(x: torch.Tensor, gen: torch.Generator, a: dict) -> torch.Tensor:
    """Resolution loss, blur and JPEG re-encoding, each on a random half of the slices."""
    b, _, h, w = x.shape
    draws = torch.rand(b, 6, generator=gen)  # drawn at once: the count never depends on the data
    out = []
    for i in range(b):
        xi = x[i:i + 1]
        hit, val = draws[i, :3] < SOURCE_P, draws[i, 3:]
        if hit[0]:
            f = a["resolution"][0] + float(val[0]) * (a["resolution"][1] - a["resolution"][0])
            small = (max(8, int(h * f)), max(8, int(w * f)))
            xi = F.interpolate(F.interpolate(xi, size=small, mode="area"), size=(h, w), mode="bilinear",
                               align_corners=False)
        if hit[1]:
            xi = _blur(xi, a["blur"][0] + float(val[1]) * (a["blur"][1] - a["blur"][0]))
        if hit[2]:
            xi = _jpeg(xi, int(a["jpeg"][0] + float(val[2]) * (a["jpeg"][1] - a["jpeg"][0])))
        out.append(xi)
    return torch.cat(out).clamp(0, 1)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma < 0.3:
        return x
    radius = max(1, int(math.ceil(2.5 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Re-encode (1, C, H, W) as 8-bit JPEG at `quality` and decode it again (per channel)."""
    chans = []
    for c in range(x.shape[1]):
        arr = (x[0, c].detach().float().cpu().numpy() * 255).round().astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
        chans.append(torch.from_numpy(np.asarray(Image.open(buf), dtype=np.float32) / 255))
    return torch.stack(chans)[None].to(x.device, x.dtype)
