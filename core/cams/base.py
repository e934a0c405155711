"""Base class of the CAM methods: each method turns a slice classifier + slice into a map in [0, 1].

A method is a context manager: hooks it registers (pytorch-grad-cam's, or our own) are released
on exit, so a dashboard that switches methods never stacks hooks on the model.
"""
from __future__ import annotations

import torch
import torch.nn as nn


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

    def __call__(self, images01: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) float in [0, 1] -> (B, h, w) map in [0, 1] (h, w: any resolution)."""
        raise NotImplementedError
