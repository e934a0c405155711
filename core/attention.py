"""The heatmap branch's attention source: Eq. 1 map, Eq. 2 threshold, largest region, its crop.

Eq. 1:  H = (S - min S) / max(S - min S)  with  S(x, y) = sum_k f_k(x, y)  (last conv activations)
Eq. 2:  B = H > tau                      (tau = 0.75 in the paper; smaller tau, larger mask)

The largest 8-connected region of B gives a box, in coordinates normalised to [0, 1] of the slice,
so it maps back to the original slice at any resolution. When no pixel passes tau the box is the
whole slice (and `empty` says so). Maps are upsampled once to the slice's working size and cached;
a new tau then costs one threshold, one labelling and one crop (the dashboard's slider).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .cams.base import normalise, resize_maps

DEFAULT_TAU = 0.75
_EIGHT = np.ones((3, 3), bool)


@dataclass(frozen=True)
class Box:
    """(y0, x0, y1, x1) in [0, 1] of the slice, y1/x1 exclusive."""

    y0: float
    x0: float
    y1: float
    x1: float

    def as_list(self) -> list[float]:
        return [self.y0, self.x0, self.y1, self.x1]

    def pixels(self, h: int, w: int) -> tuple[int, int, int, int]:
        y0, x0 = int(np.floor(self.y0 * h)), int(np.floor(self.x0 * w))
        y1, x1 = max(y0 + 1, int(np.ceil(self.y1 * h))), max(x0 + 1, int(np.ceil(self.x1 * w)))
        return y0, x0, min(y1, h), min(x1, w)

    @property
    def area(self) -> float:
        return (self.y1 - self.y0) * (self.x1 - self.x0)


FULL = Box(0.0, 0.0, 1.0, 1.0)


def eq1_map(fmap: torch.Tensor) -> torch.Tensor:
    """(B, K, h, w) activations -> (B, h, w) Eq. 1 map in [0, 1].

    The paper prints the denominator as max S; read literally, H then peaks at 1 - min S / max S,
    which on real activations (a sum over ~1000 positive channels) often stays below tau = 0.75,
    so no pixel would pass Eq. 2. We take the max after the min shift, as CAM code does
    (cam -= cam.min(); cam /= cam.max()), so the map spans [0, 1] and tau means what it says."""
    return normalise(fmap.float().sum(dim=1))  # the one scaling every CAM method shares (core.cams.base)


def upsample_maps(maps: torch.Tensor, size: int) -> torch.Tensor:
    """(B, h, w) -> (B, size, size), bilinear: the map seen at the slice's resolution."""
    return resize_maps(maps, (size, size))


def largest_region(binary: np.ndarray) -> np.ndarray:
    """The largest 8-connected region of a boolean mask (all False if the mask is empty)."""
    labels, n = ndimage.label(binary, structure=_EIGHT)
    if n == 0:
        return np.zeros_like(binary, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


def mask_box(mask: np.ndarray) -> Box | None:
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    if not rows.any():
        return None
    h, w = mask.shape
    y0, y1 = np.nonzero(rows)[0][[0, -1]]
    x0, x1 = np.nonzero(cols)[0][[0, -1]]
    return Box(y0 / h, x0 / w, (y1 + 1) / h, (x1 + 1) / w)


@dataclass(frozen=True)
class HeatmapCrop:
    box: Box
    region: np.ndarray  # (S, S) bool: the largest region of H > tau
    empty: bool  # nothing passed tau: the box is the whole slice


def threshold_box(hmap: np.ndarray, tau: float = DEFAULT_TAU) -> HeatmapCrop:
    """Eq. 2 and the largest region's box for one upsampled map (S, S)."""
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must lie in [0, 1], got {tau}")
    region = largest_region(hmap > tau)
    box = mask_box(region)
    return HeatmapCrop(box or FULL, region, box is None)


def crop(image: np.ndarray | torch.Tensor, box: Box, size: int) -> torch.Tensor:
    """Cut `box` out of an (H, W) slice (uint8 or float) and resize it to (size, size) float in [0, 1]."""
    img = torch.as_tensor(image)
    if img.dtype == torch.uint8:
        img = img.float() / 255.0
    h, w = img.shape[-2:]
    y0, x0, y1, x1 = box.pixels(h, w)
    part = img[..., y0:y1, x0:x1].reshape(1, 1, y1 - y0, x1 - x0)
    return F.interpolate(part, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0, 0]


def crops_for_maps(maps_up: torch.Tensor, hires: torch.Tensor, tau: float, size: int):
    """Batch path: boxes and (N, 1, size, size) uint8 crops for N upsampled maps and slices."""
    boxes, out = [], torch.empty((len(maps_up), 1, size, size), dtype=torch.uint8)
    for i in range(len(maps_up)):
        hc = threshold_box(maps_up[i].numpy(), tau)
        boxes.append(hc)
        out[i, 0] = (crop(hires[i, 0], hc.box, size) * 255).round().to(torch.uint8)
    return boxes, out
