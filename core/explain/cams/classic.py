"""Zhou et al. 2016 CAM: the FC weights of the decision applied to the last conv map."""
from __future__ import annotations

import torch

from .base import CamMethod


def weighted_cam(fmap: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(B, K, h, w), (K,) -> (B, h, w) in [0, 1]: ReLU(sum_k w_k f_k), scaled by its max."""
    cam = torch.relu(torch.einsum("bkhw,k->bhw", fmap.float(), weights.float()))
    return cam / cam.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)


class ClassCam(CamMethod):
    name = "cam"

    @torch.no_grad()
    def raw(self, images01):
        fmap = self.classifier.backbone.features(images01)
        return torch.relu(torch.einsum("bkhw,k->bhw", fmap.float(), self.classifier.fc.weight[0].float()))
