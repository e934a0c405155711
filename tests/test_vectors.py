"""The branch-vector contract (core.models.vectors): one assembly of the fusion input, sizes recorded in the
checkpoints that need them, read back by TrainedRun.load."""
from __future__ import annotations

import torch

from core.models.branches import VectorHead
from core.models.vectors import FEATURE_SETS, HEADS, KEYS, branch_vectors, pick, sizes


def test_assembly_sizes_and_heads_agree():
    g, h = torch.rand(3, 8), torch.rand(3, 8)
    lung, present = torch.rand(3, 2, 8), torch.tensor([[1, 0], [0, 0], [1, 1]])
    v = branch_vectors(g, h, lung, present)
    assert tuple(v) == KEYS
    assert {k: t.shape[1] for k, t in v.items()} == sizes(8)
    assert torch.equal(v["r"], lung[:, 0]) and torch.equal(v["l"], lung[:, 1]) and v["present"].dtype == torch.float32
    for head, keys in HEADS.items():  # every head is built from the sizes of exactly the vectors it reads
        out = VectorHead(sizes(8, keys))(pick(v, head))
        assert out.shape == (3,)
    assert set().union(*FEATURE_SETS.values()) == set(KEYS)  # the map's feature sets cover every vector


def test_checkpoints_record_the_sizes_they_need(synthetic_run):
    from core.inference import TrainedRun
    from core.runs.checkpoint import load_checkpoint

    tr = TrainedRun.load(synthetic_run)
    k = tr.m["global"].backbone.num_features
    assert load_checkpoint(synthetic_run / "fusion" / "best.pt")["sizes"] == sizes(k)
    assert load_checkpoint(synthetic_run / "global+heatmap" / "best.pt")["sizes"] == sizes(k, HEADS["global+heatmap"])
    assert load_checkpoint(synthetic_run / "infected" / "best.pt")["sizes"] == {"g": k}
    assert tr.m["fusion"].dims == sizes(k) and tr.m["infected"].dims == {"g": k}
