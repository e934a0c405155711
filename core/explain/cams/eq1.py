"""The paper's Eq. 1: the channel sum of the last conv activations, min-shifted, over its max."""
from __future__ import annotations

import torch

from .base import CamMethod


class Eq1Cam(CamMethod):
    name = "eq1"

    @torch.no_grad()
    def raw(self, images01):
        """S(x, y) = sum_k f_k(x, y); the base class's min-max scaling makes it Eq. 1
        (core.explain.attention.eq1_map)."""
        return self.classifier.backbone.features(images01).float().sum(dim=1)
