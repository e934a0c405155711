"""The infected branch and the fusion heads (the global and heatmap branches are SliceClassifiers); the
vectors they read are core.models.network's."""
from __future__ import annotations

import torch
import torch.nn as nn

from core.models.backbones import Backbone


class InfectedClassifier(nn.Module):
    """One backbone over both lung crops; [pool_right, pool_left, pool_global] -> logit.

    The global pooled vector comes from the frozen global branch (cached, key "g"): on a slice
    without lesions both crop vectors are zero and the global vector carries the decision."""

    def __init__(self, backbone: Backbone, global_dim: int, crops: tuple[str, str],
                 reads: tuple[str, str, str] = ("r", "l", "g"), present: str = "present", dropout: float = 0.2):
        super().__init__()
        self.backbone = backbone
        self.crops = crops  # the batch keys of the right- and left-lung crops (core.models.network.SIDES)
        self.reads = reads  # its head's vectors in the fusion input, in order: the two lungs', then the global one
        self.present = present  # the batch key of the lesion flags (B, 2)
        self.dims = {"g": global_dim}  # the vector it reads besides its crops (recorded in its checkpoint)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * backbone.num_features + global_dim, 1)

    def crop_vectors(self, batch) -> torch.Tensor:
        """(B, 2, K): pooled vectors of the right- and left-lung crops, zeroed where absent."""
        right, left = (batch[k] for k in self.crops)
        b = right.shape[0]
        pooled = self.backbone.pool(self.backbone.features(torch.cat([right, left], 0))).float()
        pooled = torch.stack([pooled[:b], pooled[b:]], 1)
        return pooled * batch[self.present].float()[:, :, None]

    def vectors(self, batch) -> dict:
        """Its part of the fusion input: each lung's vector, and the lesion flags."""
        lungs = self.crop_vectors(batch)
        return {**{key: lungs[:, j] for j, key in enumerate(self.reads[:2])}, self.present: batch[self.present]}

    def logit(self, vectors: dict) -> torch.Tensor:
        """(B,): its head over the fusion input's lung vectors and global vector."""
        return self.fc(self.dropout(torch.cat([vectors[k].float() for k in self.reads], 1))).squeeze(1)

    def forward(self, batch):
        v = self.crop_vectors(batch)
        x = torch.cat([v.flatten(1), batch[self.reads[2]].float()], 1)
        return self.fc(self.dropout(x)).squeeze(1)


CLIP = 8.0  # standardised inputs beyond +-8 training std are out of distribution: bounded


class VectorHead(nn.Module):
    """One FC layer over concatenated cached vectors (the fusion branch, and global+heatmap).

    Inputs are standardised with statistics of the training split (fit_standardisation), so
    vectors of different backbones enter on one scale; the decision itself is one linear layer."""

    def __init__(self, dims: dict[str, int], dropout: float = 0.3):
        super().__init__()
        self.keys = list(dims)
        self.dims = dict(dims)
        total = sum(dims.values())
        self.register_buffer("mean", torch.zeros(total))
        self.register_buffer("std", torch.ones(total))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(total, 1)

    def fit_standardisation(self, train_inputs: dict[str, torch.Tensor]) -> "VectorHead":
        x = self.concat(train_inputs)
        std = x.std(0)
        # Post-ReLU pooled features are often (nearly) constant on the training split; dividing by
        # their tiny std would blow any later deviation up a million-fold. Floor the scale at a
        # tenth of the typical feature's, and clip (below) what still lands far outside.
        floor = max(1e-3, 0.1 * float(std.median()))
        self.mean.copy_(x.mean(0))
        self.std.copy_(std.clamp_min(floor))
        return self

    def concat(self, batch) -> torch.Tensor:
        return torch.cat([batch[k].float().flatten(1) for k in self.keys], 1)

    def standardised(self, batch) -> torch.Tensor:
        return ((self.concat(batch) - self.mean) / self.std).clamp(-CLIP, CLIP)

    def forward(self, batch):
        return self.fc(self.dropout(self.standardised(batch))).squeeze(1)

    def logit(self, vectors: dict) -> torch.Tensor:
        """(B,): the head over the fusion input (it reads its own keys)."""
        return self(vectors)

    def part_weights(self) -> dict[str, torch.Tensor]:
        """The FC weight of each input, divided by its std: the weights that apply to raw
        activations, which the fusion CAM projects onto each branch's conv map."""
        w = (self.fc.weight[0] / self.std).detach()
        out, i = {}, 0
        for k in self.keys:
            out[k] = w[i:i + self.dims[k]]
            i += self.dims[k]
        return out
