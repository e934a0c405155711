"""Class activation map of the fusion decision (Zhou et al. 2016, extended to several sources).

The fusion FC weight splits into one part per input (global, heatmap, right/left lung crops).
Each part, applied to its branch's last conv map, gives a map over that branch's input; it is
placed where the input came from (core.models.network.PLACES: the whole slice, the heatmap box, the lung
boxes) and the parts are summed,
so the map shows which pixels pushed the fused decision towards COVID.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from core.explain.attention import Box, upsample_maps
from core.models.network import PLACES, PRESENT


def paste(canvas: torch.Tensor, parts: torch.Tensor, boxes: torch.Tensor) -> None:
    """Add each (h, w) map, resized to its box ([y0, x0, y1, x1] in [0, 1]), into its canvas (B, S, S)."""
    s = canvas.shape[-1]
    for i in range(len(parts)):
        b = Box(*boxes[i].tolist())
        if b.area <= 0:
            continue
        y0, x0, y1, x1 = b.pixels(s, s)
        canvas[i, y0:y1, x0:x1] += F.interpolate(parts[i][None, None], size=(y1 - y0, x1 - x0),
                                                 mode="bilinear", align_corners=False)[0, 0]


@torch.no_grad()
def fusion_cam(models: dict, batch: dict, size: int = 112) -> torch.Tensor:
    """(B, size, size) map in [0, 1].

    models: every branch's model and "fusion" (core.models.network.build), by stage; batch (float inputs in
    [0, 1]): each vector's input and box (core.models.network.PLACES): "image", "crop", "crop_box" (B, 4), the
    lung crops ("right", "left"), "side_boxes" (B, 2, 4), and the lesion flags "present" (B, 2)."""
    w = models["fusion"].part_weights()
    cam = torch.zeros(len(batch["image"]), size, size)
    for key, place in PLACES.items():  # each vector's weights on its model's conv map, placed on the slice
        part = torch.einsum("bkhw,k->bhw", models[place.stage].backbone.features(batch[place.input]).float(),
                            w[key]).cpu()
        boxes = None if place.box is None else batch[place.box].cpu()
        if place.side is not None:  # a lung without lesion adds nothing
            part = part * batch[PRESENT][:, place.side].float().cpu()[:, None, None]
            boxes = boxes[:, place.side]
        if boxes is None:
            cam += upsample_maps(part, size)
        else:
            paste(cam, part, boxes)
    cam = torch.relu(cam)
    return cam / cam.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
