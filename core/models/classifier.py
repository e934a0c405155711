"""Classifier heads over backbones: one pooled vector -> one logit (sigmoid + BCE outside)."""
from __future__ import annotations

import torch
import torch.nn as nn

from core.models.backbones import Backbone


class SliceClassifier(nn.Module):
    """A backbone on one image input (`key`) -> logit. The global and heatmap branches; `vector`: its pooled
    vector's key in the fusion input (core.models.network)."""

    def __init__(self, backbone: Backbone, key: str = "image", vector: str = "g", dropout: float = 0.2):
        super().__init__()
        # keep_cam: forward() also keeps the class activation map (B, h, w) in last_cam, for the
        # knowledge-guided attention loss (core.training.guidance); off outside guided training.
        self.keep_cam, self.last_cam = False, None
        self.backbone = backbone
        self.key, self.vector = key, vector
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(backbone.num_features, 1)

    def fmap(self, batch) -> torch.Tensor:
        return self.backbone.features(batch[self.key])

    def embed(self, batch) -> torch.Tensor:
        return self.backbone.pool(self.fmap(batch))

    def vectors(self, batch) -> dict:
        """Its part of the fusion input."""
        return {self.vector: self.embed(batch)}

    def logit(self, vectors: dict) -> torch.Tensor:
        """(B,): its head on its pooled vector in the fusion input (as forward's, without the image pass)."""
        return self.fc(self.dropout(vectors[self.vector].float())).squeeze(1)

    def forward(self, batch) -> torch.Tensor:
        fmap = self.fmap(batch)
        if self.keep_cam:
            self.last_cam = torch.einsum("bkhw,k->bhw", fmap.float(), self.fc.weight[0].float())
        return self.fc(self.dropout(self.backbone.pool(fmap))).squeeze(1)
