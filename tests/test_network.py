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
    # the stages in training order, the segmenter before the first branch that reads its lesion crops
    assert network.IMAGE_STAGES == ("global", "heatmap", "infected")
    assert network.STAGES == ("global", "heatmap", network.SEGMENTER, "infected", "global+heatmap", "fusion")
    assert set(network.TITLES) == set(network.STAGES) and len(set(network.TITLES.values())) == len(network.TITLES)
    assert {key: (p.stage, p.input) for key, p in network.PLACES.items()} == {
        "g": ("global", "image"), "h": ("heatmap", "crop"), "r": ("infected", "right"), "l": ("infected", "left")}


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
    assert list(logits) == list(network.NAMES) and all(t.shape == (3,) for t in logits.values())
    assert torch.allclose(logits["global+infected"], m["infected"]({**batch, "g": v["g"]}), atol=1e-6)
    assert torch.allclose(logits["fusion"], m["fusion"](v)) and torch.allclose(logits["global"], m["global"](batch))
    assert torch.allclose(logits["heatmap"], m["heatmap"](batch))
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


def test_the_joint_network_holds_its_branches_in_table_order_and_scores_each_with_its_own_model():
    """Given in any order, JointNet keeps TABLE's, and its logit columns are each branch's own forward pass on the
    inputs it builds in the graph: the global branch on the downsampled slice, the heatmap branch on the Eq. 1
    crops it cuts, the infected branch on the lung crops and that global vector, the fusion layer on them all."""
    from core.models.joint import JointNet

    cfg = PipelineConfig(recipe="fast", init="scratch", image_size=64)
    torch.manual_seed(0)
    first = network.build(cfg, only=("global", "fusion"))
    k = first["global"].backbone.num_features
    joint = JointNet({**first, **network.build(cfg, network.sizes(k), only=("heatmap", "infected"))}, 0.75, 64).eval()
    assert list(joint.models) == ["global", "heatmap", "infected", "fusion"]
    gen = torch.Generator().manual_seed(2)
    batch = {"hires": torch.rand(2, 1, 128, 128, generator=gen), "right": torch.rand(2, 1, 48, 48, generator=gen),
             "left": torch.rand(2, 1, 48, 48, generator=gen), "present": torch.tensor([[1, 1], [1, 0]])}
    with torch.no_grad():
        out = joint(batch)
        image = torch.nn.functional.interpolate(batch["hires"], size=(64, 64), mode="bilinear", antialias=True,
                                                align_corners=False)
        crops, _ = joint.crops(batch["hires"], joint["global"].backbone.features(image))
        g = joint["global"].embed({"image": image})
        h = joint["heatmap"].embed({"crop": crops})
        own = [joint["global"]({"image": image}), joint["heatmap"]({"crop": crops}),
               joint["infected"]({**batch, "g": g})]
        lungs = joint["infected"].crop_vectors(batch)
        own.append(joint["fusion"]({"g": g, "h": h, "r": lungs[:, 0], "l": lungs[:, 1], "present": batch["present"]}))
    assert out.shape == (2, 4)
    for j, logit in enumerate(own):
        assert torch.allclose(out[:, j], logit, atol=1e-5), list(joint.models)[j]


@torch.no_grad()
def test_the_fusion_cam_places_each_vectors_map_where_its_input_came_from():
    """With the fusion weights on one vector alone, the fusion CAM lies inside that vector's place
    (network.PLACES): the whole slice, the tau crop's box, a lung's box (nothing where that lung has no lesion)."""
    from core.explain.fusion_cam import fusion_cam
    from core.inputs.boxes import Box

    torch.manual_seed(0)
    m = {stage: model.eval() for stage, model in network.build(CFG).items()}
    gen = torch.Generator().manual_seed(3)
    batch = {"image": torch.rand(2, 1, 64, 64, generator=gen), "crop": torch.rand(2, 1, 64, 64, generator=gen),
             "right": torch.rand(2, 1, 48, 48, generator=gen), "left": torch.rand(2, 1, 48, 48, generator=gen),
             "crop_box": torch.tensor([[0.25, 0.25, 0.75, 0.75]] * 2),
             "side_boxes": torch.tensor([[[0.1, 0.05, 0.6, 0.45], [0.2, 0.55, 0.9, 0.95]]] * 2),
             "present": torch.tensor([[1, 1], [1, 0]])}
    fusion, size = m["fusion"], 40
    widths = fusion.dims
    for key, place in network.PLACES.items():
        fusion.fc.weight.zero_()
        start = sum(widths[k] for k in fusion.keys[:fusion.keys.index(key)])
        fusion.fc.weight[0, start:start + widths[key]] = torch.rand(widths[key], generator=gen)  # towards COVID
        cam = fusion_cam(m, batch, size)
        if place.box is None:
            assert (cam > 0).float().mean() > 0.2, key  # spread over the slice
            continue
        boxes = batch[place.box] if place.side is None else batch[place.box][:, place.side]
        for i in range(2):
            y0, x0, y1, x1 = Box(*boxes[i].tolist()).pixels(size, size)
            inside = torch.zeros(size, size, dtype=torch.bool)
            inside[y0:y1, x0:x1] = True
            absent = place.side is not None and not batch["present"][i, place.side]
            assert cam[i][~inside].abs().max() == 0, (key, i)
            assert (cam[i].max() == 0) if absent else (cam[i][inside].max() == 1), (key, i)
