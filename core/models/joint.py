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
    """Returns (B, m) logits: [global, heatmap, global+infected] (+ [fusion] for GHIF).

    `models`: network.build's global, heatmap and infected models (and the fusion head for GHIF)."""

    def __init__(self, models: dict, tau: float, image_size: int):
        super().__init__()
        self.g, self.h, self.inf, self.fusion = models["global"], models["heatmap"], models["infected"], models.get("fusion")
        self.tau, self.image_size = tau, image_size

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
        fmap = self.g.backbone.features(image)
        gvec = self.g.backbone.pool(fmap)
        crops, _ = self.crops(hires, fmap)
        hvec = self.h.embed({"crop": crops})
        # the global and heatmap vectors come from the passes above (their maps and crops): given, not recomputed
        vec = network.vectors({"infected": self.inf}, {**batch, "g": gvec, "h": hvec})
        logits = {"global": self.g.fc(self.g.dropout(gvec)).squeeze(1),
                  "heatmap": self.h.fc(self.h.dropout(hvec)).squeeze(1),
                  "global+infected": self.inf.fc(self.inf.dropout(torch.cat([network.lung_vectors(vec), vec["g"]], 1)))
                  .squeeze(1)}
        if self.fusion is not None:
            logits["fusion"] = self.fusion(vec)
        return vec, logits

    def forward(self, batch):
        return torch.stack(list(self.vectors(batch)[1].values()), 1)

