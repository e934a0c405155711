"""Joint training strategies of the paper's Table 3.

GHI-F: global, heatmap and infected branches train together (one loss per branch, summed), then
       the fusion layer trains on their frozen, cached vectors.
GHIF:  all four train together end to end (the fusion loss joins the sum).

Unlike G-H-I-F, the heatmap crops here come from the *current* global model: every batch's Eq. 1
maps are thresholded and cropped inside the forward pass (without gradient through the box). A joint run
is therefore scored on Eq. 1 crops too: core.config refuses another CAM method with a joint strategy.
One augmented view feeds everything: the batch carries the high-resolution slice ("hires"), and
the global branch sees it downsampled, so crops and maps stay aligned under augmentation.
The segmenter is frozen in every strategy (its lesion crops are precomputed).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.explain.attention import eq1_map, threshold_box, upsample_maps
from core.inputs.boxes import crop
from core.models import network


class JointNet(nn.Module):
    """Returns (B, m) logits, one per branch it holds in TABLE's order: [global, heatmap, global+infected]
    (+ [fusion] for GHIF).

    `models`: network.build's models of the branches trained on images (and the fusion head for GHIF)."""

    def __init__(self, models: dict, tau: float, image_size: int):
        super().__init__()
        self.models = nn.ModuleDict({b.stage: models[b.stage] for b in network.TABLE if b.stage in models})
        self.tau, self.image_size = tau, image_size

    def __getitem__(self, stage: str) -> nn.Module:
        return self.models[stage]

    def crops(self, hires: torch.Tensor, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            maps = upsample_maps(eq1_map(fmap.detach().float()).cpu(), self.image_size)  # the paper's Eq. 1
        boxes, out = [], []
        for i in range(len(hires)):
            hc = threshold_box(maps[i].numpy(), self.tau)
            boxes.append(hc.box.as_list())
            out.append(crop(hires[i, 0], hc.box, self.image_size))
        return torch.stack(out)[:, None].to(hires.dtype), torch.tensor(boxes)

    def vectors(self, batch) -> tuple[dict, dict]:
        hires = batch["hires"].float()
        image = F.interpolate(hires, size=(self.image_size, self.image_size), mode="bilinear",
                              antialias=True, align_corners=False)
        g = self.models["global"]
        fmap = g.backbone.features(image)
        crops, _ = self.crops(hires, fmap)
        # the global vector comes from the pass that gave its maps (given, not recomputed); every other branch
        # computes its own from the batch (the heatmap branch from the crops just cut)
        vec = network.vectors(dict(self.models), {**batch, "image": image, "crop": crops, "g": g.backbone.pool(fmap)})
        return vec, network.logits(dict(self.models), vec)

    def forward(self, batch):
        return torch.stack(list(self.vectors(batch)[1].values()), 1)
