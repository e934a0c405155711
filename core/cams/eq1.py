"""The paper's Eq. 1: the channel sum of the last conv activations, min-shifted, over its max."""
from __future__ import annotations

import torch

from ..attention import eq1_map
from .base import CamMethod


class Eq1Cam(CamMethod):
    name = "eq1"

    @torch.no_grad()
    def __call__(self, images01):
        return eq1_map(self.classifier.backbone.features(images01))
