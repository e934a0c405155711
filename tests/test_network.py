"""The network module (core.models.network): one table names every branch, `build` makes every branch's model,
`vectors` assembles the fusion input from one batch, and what the run folder, predictions.csv, the heads, the
3D map and the lesion crops use is derived from the table. Checkpoints record the sizes TrainedRun rebuilds from."""
from __future__ import annotations

import pytest
import torch

from core.config import PipelineConfig
from core.inputs.lesion_crops import SIDE_NAMES
from core.models import network
from core.models.branches import InfectedClassifier, VectorHead
from core.models.classifier import SliceClassifier
from core.results.predictions import BASELINES, BRANCHES, DECISIONS
from core.runs.run_view import RunView

CFG = PipelineConfig(recipe="fast", init="scratch")


def test_every_list_of_branches_comes_from_the_table():
    assert network.NAMES == ("global", "heatmap", "global+heatmap", "global+infected", "fusion")
    assert BRANCHES == (*network.NAMES, *DECISIONS, *BASELINES)  # predictions.csv's columns, the paper's order
    assert set(network.STAGES) == {b.stage for b in network.TABLE} | {network.SEGMENTER}
    assert network.KEYS == ("g", "h", "r", "l", "present")
    assert network.HEADS["fusion"] == network.KEYS and network.HEADS["global+heatmap"] == ("g", "h")
    assert set().union(*network.FEATURE_SETS.values()) == set(network.KEYS)  # the map's sets cover every vector
    assert RunView.FEATURE_SETS == ("fusion", "global", "heatmap", "infected")
    assert SIDE_NAMES == ("right_lung", "left_lung") and network.CROPS == ("right", "left")
    assert network.VECTOR_HEADS == ("global+heatmap", "fusion")  # trained last, on cached vectors
    assert network.TAU_BRANCHES == ("heatmap", "global+heatmap", "fusion")  # the heads reading the tau crop's vector


def test_build_makes_every_branch_sized_from_the_global_width():
    torch.manual_seed(0)
    m = network.build(CFG)
    assert list(m) == [b.stage for b in network.TABLE]
    assert isinstance(m["global"], SliceClassifier) and m["global"].key == "image"
    assert isinstance(m["heatmap"], SliceClassifier) and m["heatmap"].key == "crop"
    assert isinstance(m["infected"], InfectedClassifier) and m["infected"].crops == network.CROPS
    k = m["global"].backbone.num_features
    assert m["infected"].dims == {"g": k}
    assert isinstance(m["fusion"], VectorHead) and m["fusion"].dims == network.sizes(k)
    assert m["global+heatmap"].dims == network.sizes(k, ("g", "h"))
    one = network.build(CFG, {"g": 7, "h": 7, "r": 7, "l": 7, "present": 2}, only=("fusion",))
    assert list(one) == ["fusion"] and one["fusion"].dims["g"] == 7
    with pytest.raises(ValueError, match="needs the vector sizes"):
        network.build(CFG, only=("fusion",))
    with pytest.raises(ValueError, match="no branch has stage"):
        network.build(CFG, only=("lesions",))


@torch.no_grad()
def test_vectors_assemble_the_fusion_input_and_take_given_vectors_as_they_are():
    torch.manual_seed(0)
    m = {stage: model.eval() for stage, model in network.build(CFG).items()}
    gen = torch.Generator().manual_seed(1)
    batch = {"image": torch.rand(3, 1, 64, 64, generator=gen), "crop": torch.rand(3, 1, 64, 64, generator=gen),
             "right": torch.rand(3, 1, 48, 48, generator=gen), "left": torch.rand(3, 1, 48, 48, generator=gen),
             "present": torch.tensor([[1, 0], [0, 0], [1, 1]])}
    v = network.vectors(m, batch)
    k = m["global"].backbone.num_features
    assert tuple(v) == network.KEYS and {key: t.shape[1] for key, t in v.items()} == network.sizes(k)
    assert torch.equal(v["g"], m["global"].embed(batch).float())
    assert torch.equal(v["h"], m["heatmap"].embed(batch).float())
    lungs = m["infected"].crop_vectors(batch)
    assert torch.equal(v["r"], lungs[:, 0]) and torch.equal(v["l"], lungs[:, 1])
    assert v["present"].dtype == torch.float32 and v["l"][0].abs().sum() == 0  # no lesion on that side: zero
    given = network.vectors({"infected": m["infected"]}, {**batch, "g": torch.zeros(3, k), "h": torch.ones(3, k)})
    assert given["g"].abs().sum() == 0 and torch.equal(given["h"], torch.ones(3, k))  # cached vectors, not recomputed
    logits = network.logits(m, v)
    assert list(logits) == list(network.NAMES)
    assert torch.allclose(logits["global+infected"], m["infected"]({**batch, "g": v["g"]}).view(-1, 1).flatten(), atol=1e-6)
    assert torch.allclose(logits["fusion"], m["fusion"](v)) and torch.allclose(logits["global"], m["global"](batch)[:, None])
    for head, keys in network.HEADS.items():  # every vector head reads exactly its vectors
        if isinstance(m[network.BY_NAME[head].stage], VectorHead):
            assert m[network.BY_NAME[head].stage].keys == list(keys)


def test_checkpoints_record_the_sizes_they_need(synthetic_run):
    from core.inference import TrainedRun
    from core.runs.checkpoint import load_checkpoint

    tr = TrainedRun.load(synthetic_run)
    k = tr.m["global"].backbone.num_features
    assert load_checkpoint(synthetic_run / "fusion" / "best.pt")["sizes"] == network.sizes(k)
    assert load_checkpoint(synthetic_run / "global+heatmap" / "best.pt")["sizes"] == \
        network.sizes(k, network.HEADS["global+heatmap"])
    assert load_checkpoint(synthetic_run / "infected" / "best.pt")["sizes"] == {"g": k}
    assert tr.m["fusion"].dims == network.sizes(k) and tr.m["infected"].dims == {"g": k}
