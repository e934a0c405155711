"""Boxes in fractions of a slice, so that one box maps back to the slice at any resolution, and the
crop a box cuts. The tau crop, the lung-field box and the lesion boxes are all Boxes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


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


def mask_box(mask: np.ndarray) -> Box | None:
    """The box around a boolean mask's True pixels; None when there are none."""
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    if not rows.any():
        return None
    h, w = mask.shape
    y0, y1 = np.nonzero(rows)[0][[0, -1]]
    x0, x1 = np.nonzero(cols)[0][[0, -1]]
    return Box(y0 / h, x0 / w, (y1 + 1) / h, (x1 + 1) / w)


def crop(image: np.ndarray | torch.Tensor, box: Box, size: int) -> torch.Tensor:
    """Cut `box` out of an (H, W) slice (uint8 or float) and resize it to (size, size) float in [0, 1]."""
    img = torch.as_tensor(image)
    if img.dtype == torch.uint8:
        img = img.float() / 255.0
    h, w = img.shape[-2:]
    y0, x0, y1, x1 = box.pixels(h, w)
    part = img[..., y0:y1, x0:x1].reshape(1, 1, y1 - y0, x1 - x0)
    return F.interpolate(part, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0, 0]
