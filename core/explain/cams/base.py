"""Base class of the CAM methods: the one contract every map method keeps.

The base class owns the map computation; a method overrides only `raw` (its unscaled map, at its
own resolution: the last conv grid, or the input's size for pytorch-grad-cam's methods). Then, the
same for every method: each map is min-max scaled to [0, 1] at that resolution (`native`, what a
run stores: small) and bilinearly resized to the input's size (`__call__`). So tau means the same
thing whichever method drew the map.

A method is a context manager: hooks it registers (pytorch-grad-cam's, or our own) are released
on exit, so a dashboard that switches methods never stacks hooks on the model.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class _LogitModel(nn.Module):
    """Adapter: tensor (B, 1, H, W) -> (B, 1) logit, the shape pytorch-grad-cam expects."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, x):
        return self.classifier({self.classifier.key: x})[:, None]


def last_conv_layer(classifier: nn.Module) -> nn.Module:
    """The module whose output is the backbone's last conv map f_k(x, y)."""
    return classifier.backbone.trunk


class CamMethod:
    name = "base"

    def __init__(self, classifier: nn.Module):
        self.classifier = classifier.eval()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    def release(self) -> None:
        pass

    def raw(self, images01: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) float in [0, 1] -> (B, h, w) unscaled map at the method's own resolution."""
        raise NotImplementedError

    def native(self, images01: torch.Tensor) -> torch.Tensor:
        """(B, h, w) map in [0, 1] at the method's own resolution (what a run caches)."""
        return normalise(self.raw(images01).float())

    def __call__(self, images01: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) float in [0, 1] -> (B, H, W) map in [0, 1] at the input's size."""
        return resize_maps(self.native(images01), images01.shape[-2:])


def normalise(maps: torch.Tensor) -> torch.Tensor:
    """(B, h, w) -> each map shifted by its min and divided by its max (a flat map becomes 0)."""
    shifted = maps - maps.amin(dim=(1, 2), keepdim=True)
    return shifted / shifted.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)


def resize_maps(maps: torch.Tensor, size) -> torch.Tensor:
    """(B, h, w) -> (B, H, W) bilinear (identity when the sizes match)."""
    size = tuple(int(v) for v in size)
    if tuple(maps.shape[-2:]) == size:
        return maps
    return F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
