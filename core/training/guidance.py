"""Knowledge-guided attention: the lung field and the lesions as training signals for a classifier.

The class activation map of a slice classifier, CAM = ReLU(sum_k w_k f_k) (the FC weights of the
decision over the last conv map), says where the evidence for "COVID" lies. Two penalties on it,
in the spirit of right-for-the-right-reasons / GradMask (Ross et al. 2017; Simpson et al. 2019):

outside   the share of CAM energy outside the lung field, on every slice: evidence from the frame
          (zoom, borders, text, body outline) costs loss;
lesion    1 - the share of CAM energy inside the lesions, on COVID slices that have a lesion mask
          (COVID-CT's COVID training slices: the segmenter's masks): evidence for COVID should be
          where the disease is.

Masks are moved with the image by the augmentation and pooled to the CAM's grid (a cell counts as
lung or lesion when any of its pixels is: CAM cells are 32 pixels wide).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-6
MASK_KEYS = ("lung", "lesion")


def cell_masks(mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, 1, H, W) in [0, 1] -> (B, h, w) in {0, 1}: a cell is in when any pixel is."""
    return (F.adaptive_max_pool2d(mask.float(), grid)[:, 0] > 0.5).float()


def attention_loss(cam: torch.Tensor, batch: dict, labels: torch.Tensor, outside: float, lesion: float) -> torch.Tensor:
    """cam: (B, h, w) signed class evidence; labels (B,) in {0, 1} (before smoothing)."""
    energy = torch.relu(cam.float())
    total = energy.sum(dim=(1, 2)) + EPS
    loss = cam.new_zeros((), dtype=torch.float32)
    if outside and "lung" in batch:
        lung = cell_masks(batch["lung"], cam.shape[-2:])
        loss = loss + outside * ((energy * (1 - lung)).sum(dim=(1, 2)) / total).mean()
    if lesion and "lesion" in batch:
        les = cell_masks(batch["lesion"], cam.shape[-2:])
        has = (labels > 0.5) & (les.flatten(1).amax(1) > 0)
        if has.any():
            share = (energy * les).sum(dim=(1, 2)) / total
            loss = loss + lesion * (1 - share[has]).mean()
    return loss
