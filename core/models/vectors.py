"""The fusion layer's input: one pooled vector per branch, assembled here and nowhere else.

    g        (B, K) the global branch's pooled vector
    h        (B, K) the heatmap branch's pooled vector (its tau crop)
    r, l     (B, K) the right- and left-lung lesion crops' pooled vectors (zero where a lung has no lesion)
    present  (B, 2) the two lesion flags

Adding a branch means adding its key here (and its producer): every head, cache, probe and map
reads the keys and sizes from this module.
"""
from __future__ import annotations

import torch

KEYS = ("g", "h", "r", "l", "present")
# the vectors each trained head reads (one FC layer each); the infected branch's own head reads g, r, l
HEADS = {"global": ("g",), "global+heatmap": ("g", "h"), "global+infected": ("g", "r", "l", "present"),
         "fusion": KEYS}
# the 3D map's feature sets: what each branch itself contributes
FEATURE_SETS = {"global": ("g",), "heatmap": ("h",), "infected": ("r", "l", "present")}


def sizes(k: int, keys=KEYS) -> dict[str, int]:
    """Vector sizes for pooled vectors of width k (a head's constructor argument)."""
    return {key: (2 if key == "present" else k) for key in keys}


def branch_vectors(g: torch.Tensor, h: torch.Tensor, lung: torch.Tensor, present: torch.Tensor) -> dict:
    """The fusion input from the global and heatmap pooled vectors, the (B, 2, K) lung-crop vectors
    (InfectedClassifier.crop_vectors) and the (B, 2) lesion flags."""
    return {"g": g.float(), "h": h.float(), "r": lung[:, 0], "l": lung[:, 1], "present": present.float()}


def pick(vectors: dict, head: str) -> dict:
    """The vectors one head reads."""
    return {k: vectors[k] for k in HEADS[head]}
