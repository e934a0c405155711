"""The heatmap branch's attention source: Eq. 1 map, Eq. 2 threshold, largest region, its crop.

Eq. 1:  H = (S - min S) / max(S - min S)  with  S(x, y) = sum_k f_k(x, y)  (last conv activations)
Eq. 2:  B = H > tau                      (a run's tau, core.config; smaller tau, larger mask)

The largest 8-connected region of B gives a box, in coordinates normalised to [0, 1] of the slice,
so it maps back to the original slice at any resolution. When no pixel passes tau the box is the
whole slice (and `empty` says so). Maps are upsampled once to the slice's working size and cached;
a new tau then costs one threshold, one labelling and one crop (the dashboard's slider).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from core.explain.cams.base import normalise, resize_maps
from core.inputs.boxes import FULL, Box, crop, mask_box

_EIGHT = np.ones((3, 3), bool)


def eq1_map(fmap: torch.Tensor) -> torch.Tensor:
    """(B, K, h, w) activations -> (B, h, w) Eq. 1 map in [0, 1].

    The paper prints the denominator as max S; read literally, H then peaks at 1 - min S / max S,
    which on real activations (a sum over ~1000 positive channels) often stays below tau = 0.75,
    so no pixel would pass Eq. 2. We take the max after the min shift, as CAM code does
    (cam -= cam.min(); cam /= cam.max()), so the map spans [0, 1] and tau means what it says."""
    return normalise(fmap.float().sum(dim=1))  # the one scaling every CAM method shares (core.explain.cams.base)


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


@dataclass(frozen=True)
class HeatmapCrop:
    box: Box
    region: np.ndarray  # (S, S) bool: the largest region of H > tau
    empty: bool  # nothing passed tau: the box is the whole slice


def threshold_box(hmap: np.ndarray, tau: float) -> HeatmapCrop:
    """Eq. 2 and the largest region's box for one upsampled map (S, S)."""
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must lie in [0, 1], got {tau}")
    region = largest_region(hmap > tau)
    box = mask_box(region)
    return HeatmapCrop(box or FULL, region, box is None)


def crops_for_maps(maps_up: torch.Tensor, hires: torch.Tensor, tau: float, size: int):
    """Batch path: boxes and (N, 1, size, size) uint8 crops for N upsampled maps and slices."""
    boxes, out = [], torch.empty((len(maps_up), 1, size, size), dtype=torch.uint8)
    for i in range(len(maps_up)):
        hc = threshold_box(maps_up[i].numpy(), tau)
        boxes.append(hc)
        out[i, 0] = (crop(hires[i, 0], hc.box, size) * 255).round().to(torch.uint8)
    return boxes, out
