"""The lesion map a run stores for every slice (the segmenter's probabilities, 112 px, 8-bit) and the
share of the lung field it calls lesion: one definition for the pipeline, the live analysis, the
lesion-share baseline and the second source's labels."""
from __future__ import annotations

import torch

LESION_MAP_SIZE = 112  # side of the lesion-probability map a run stores


def lesion_map_u8(prob: torch.Tensor) -> torch.Tensor:
    """(N, h, w) lesion probabilities in [0, 1] -> the (N, 112, 112) uint8 map a run stores."""
    small = torch.nn.functional.interpolate(prob[:, None].float(), size=(LESION_MAP_SIZE,) * 2, mode="bilinear")
    return (small[:, 0] * 255).round().to(torch.uint8)


def lesion_share(prob_u8: torch.Tensor, lungs_u8: torch.Tensor, found: torch.Tensor | None = None) -> torch.Tensor:
    """(N, h, w) lesion probabilities and (N, 1, S, S) lung fields (uint8) -> (N,) share of the lung
    field where the lesion probability passes 0.5. `found` (N,) bool: a slice without a lung field has no
    lung for a lesion to lie in, its share is 0 (as its signs say: core.knowledge.signs)."""
    lung = torch.nn.functional.interpolate(lungs_u8.float(), size=prob_u8.shape[-2:], mode="nearest")[:, 0] > 127
    lesion = (prob_u8 > 127) & lung
    share = lesion.flatten(1).sum(1).float() / lung.flatten(1).sum(1).clamp_min(1).float()
    return share if found is None else share * torch.as_tensor(found, dtype=torch.bool).float()


def lesion_target(prob_u8: torch.Tensor, labels: torch.Tensor, size: int) -> torch.Tensor:
    """(N, h, w) stored lesion maps and (N,) labels -> (N, 1, size, size) uint8 0/255 lesion masks for the
    lesion-attention loss: the segmenter's lesions (p > 0.5) on COVID slices, nothing on the others."""
    up = torch.nn.functional.interpolate(prob_u8.float()[:, None] / 255, size=(size, size), mode="bilinear")
    return ((up > 0.5) & labels.bool()[:, None, None, None]).to(torch.uint8) * 255
