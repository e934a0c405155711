"""The network (the paper's Fig. 1): every branch named once in TABLE, every branch's model built by `build`,
and the fusion input assembled from one batch by `vectors`. Nothing else builds the branch models or
assembles the vector dict; the run folder's stages, predictions.csv's columns, the heads' inputs, the 3D
map's feature sets and the lung sides all come from here.

The fusion input, one pooled vector per branch (KEYS):

    g        (B, K) the global branch's pooled vector
    h        (B, K) the heatmap branch's pooled vector (its tau crop)
    r, l     (B, K) the right- and left-lung lesion crops' pooled vectors (zero where a lung has no lesion)
    present  (B, 2) the two lesion flags

A branch's model inputs are keys of a batch: "image" (the slice), "crop" (its tau crop), "right"/"left" (the
lung crops), "present" (the lesion flags), and for the infected branch "g" (the frozen global vector).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from core.models.backbones import build_backbone
from core.models.branches import InfectedClassifier, VectorHead
from core.models.classifier import SliceClassifier


@dataclass(frozen=True)
class Side:
    """A lung's side: the patient's right lung lies in the image's left half (radiological convention)."""
    name: str  # its lesion-crop box (core.inputs.lesion_crops) and SliceAnalysis.side_boxes key
    key: str  # its pooled vector in the fusion input
    crop: str  # its crop among the model inputs


SIDES = (Side("right_lung", "r", "right"), Side("left_lung", "l", "left"))  # image-left half, image-right half
CROPS = tuple(s.crop for s in SIDES)  # the lung crops' model inputs
PRESENT = "present"  # the lesion flags: an input of the infected branch and a part of the fusion input


@dataclass(frozen=True)
class Branch:
    name: str  # predictions.csv column p_<name>, the tables' row
    stage: str  # its stage folder in the run folder, and its key in the models dict
    inputs: tuple[str, ...]  # what its model reads from a batch
    produces: tuple[str, ...]  # its vectors in the fusion input
    reads: tuple[str, ...] | None  # the vectors its own head reads (None: every vector, the fusion layer)


TABLE = (
    Branch("global", "global", ("image",), ("g",), ("g",)),
    Branch("heatmap", "heatmap", ("crop",), ("h",), ("h",)),
    Branch("global+heatmap", "global+heatmap", (), (), ("g", "h")),
    # the infected branch: one backbone over both lung crops, its head over them and the frozen global vector
    Branch("global+infected", "infected", (*CROPS, PRESENT, "g"), (*(s.key for s in SIDES), PRESENT),
           ("g", *(s.key for s in SIDES), PRESENT)),
    Branch("fusion", "fusion", (), (), None),
)
SEGMENTER = "infnet"  # the segmenter's stage folder (Algorithm 1); it finds the lesions the infected branch crops

BY_NAME = {b.name: b for b in TABLE}
BY_STAGE = {b.stage: b for b in TABLE}
NAMES = tuple(b.name for b in TABLE)  # the tables' order (the paper's)
KEYS = tuple(k for b in TABLE for k in b.produces)  # the fusion input
# the run folder's stages in training order: the image branches, the segmenter, the infected branch, the heads
STAGES = ("global", "heatmap", SEGMENTER, "infected", "global+heatmap", "fusion")
HEADS = {b.name: b.reads or KEYS for b in TABLE}  # each branch's head and the vectors it reads
VECTOR_HEADS = tuple(b.name for b in TABLE if not b.inputs)  # heads over cached vectors, trained last (stage = name)
# the 3D map's feature sets: what each branch itself contributes, by its stage's name
FEATURE_SETS = {b.stage: b.produces for b in TABLE if b.produces}
TAU_KEYS = BY_NAME["heatmap"].produces  # the vectors a new tau changes (the heatmap crop's)
TAU_BRANCHES = tuple(b.name for b in TABLE if set(HEADS[b.name]) & set(TAU_KEYS))  # ... and the heads that read them
assert set(STAGES) == {*BY_STAGE, SEGMENTER}  # every model has its stage folder
assert all(BY_NAME[h].stage == h for h in VECTOR_HEADS)


def sizes(k: int, keys=KEYS) -> dict[str, int]:
    """Vector sizes for pooled vectors of width k (a head's constructor argument)."""
    return {key: (len(SIDES) if key == PRESENT else k) for key in keys}


def pick(vectors: dict, head: str) -> dict:
    """The vectors one head reads."""
    return {k: vectors[k] for k in HEADS[head]}


def build(cfg, vector_sizes: dict[str, int] | None = None, init: str | None = None,
          only: tuple[str, ...] | None = None) -> dict:
    """Every branch's model, keyed by its stage: the global and heatmap SliceClassifiers, the InfectedClassifier,
    the global+heatmap and fusion VectorHeads, built in TABLE's order.

    cfg: the run's configuration (core.config.PipelineConfig: backbone, init); `vector_sizes`: the fusion
    input's sizes (what the heads and the infected branch are built from; default: sizes() of the global
    backbone's width); `init`: the backbones' initialisation instead of cfg.init ("scratch" when checkpoints
    are loaded next); `only`: these stages alone. Seeding is the caller's: the pipeline seeds each model, joint
    training once for all."""
    wanted = [b for b in TABLE if only is None or b.stage in only]
    unknown = set(only or ()) - set(BY_STAGE)
    if unknown:
        raise ValueError(f"no branch has stage {sorted(unknown)}; stages: {', '.join(BY_STAGE)}")
    backbone = lambda: build_backbone(cfg.backbone, init or cfg.init)
    models = {}
    for b in wanted:
        if b.stage == "global":
            models[b.stage] = SliceClassifier(backbone(), key="image")
        elif b.stage == "heatmap":
            models[b.stage] = SliceClassifier(backbone(), key="crop")
        else:
            if vector_sizes is None:
                if "global" not in models:
                    raise ValueError(f"building {b.stage} needs the vector sizes (or the global branch built with it)")
                vector_sizes = sizes(models["global"].backbone.num_features)
            if b.stage == "infected":
                models[b.stage] = InfectedClassifier(backbone(), vector_sizes["g"], crops=CROPS)
            else:
                models[b.stage] = VectorHead({k: vector_sizes[k] for k in HEADS[b.name]})
    return models


def vectors(models: dict, batch: dict) -> dict:
    """Every branch's vector (KEYS) of one batch: each branch's model computes its own from its inputs, unless
    the batch already holds them (a frozen branch's cached vectors, or vectors computed once elsewhere)."""
    out = {}
    for b in TABLE:
        if not b.produces:
            continue
        if all(k in batch for k in b.produces):
            out.update({k: batch[k] for k in b.produces})
        elif b.stage == "infected":
            lungs = models[b.stage].crop_vectors({**batch, **out})  # (B, 2, K), zeroed where absent
            out.update({s.key: lungs[:, j] for j, s in enumerate(SIDES)})
            out[PRESENT] = batch[PRESENT]
        else:
            (key,) = b.produces
            out[key] = models[b.stage].embed(batch)
    return {k: out[k].float() for k in KEYS}


def lung_vectors(v: dict) -> torch.Tensor:
    """(B, 2 * K): the two lung vectors side by side, as the infected branch's head reads them."""
    return torch.cat([v[s.key] for s in SIDES], 1)


def logits(models: dict, v: dict) -> dict:
    """Every branch's logit from the fusion input `v` (models in eval mode), in TABLE's order."""
    out = {}
    for b in TABLE:
        model = models[b.stage]
        if isinstance(model, VectorHead):
            out[b.name] = model(v)
        elif b.stage == "infected":  # its head reads both lungs' vectors, then the global one
            out[b.name] = model.fc(torch.cat([lung_vectors(v), v["g"]], 1))
        else:
            out[b.name] = model.fc(v[b.produces[0]])
    return out
