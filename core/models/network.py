"""The network (the paper's Fig. 1): every branch named once in TABLE (with its model, its recipe and its title),
every branch's model built by `build`, the fusion input assembled from one batch by `vectors`, every branch's
logit by `logits`, and each vector's place on the slice (PLACES) for the fusion CAM. Nothing else builds the
branch models or assembles the vector dict; the run folder's stages and their order, predictions.csv's columns,
the heads' inputs, the 3D map's feature sets and the lung sides all come from here.

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
from typing import Callable

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
    title: str  # how the pages name its stage
    inputs: tuple[str, ...]  # what its model reads from a batch
    produces: tuple[str, ...]  # its vectors in the fusion input
    reads: tuple[str, ...] | None  # the vectors its own head reads (None: every vector, the fusion layer)
    # its stage's recipe: "global" (the run's recipe), "branch" (the recipe of the branches trained on the global
    # branch's outputs; their backbones may start from the global one, PipelineConfig.branch_init), None: a head
    # over cached vectors (VECTOR_RECIPE)
    trains: str | None = None
    # its model from a backbone factory and the fusion input's sizes (a callable: asked only when needed);
    # None: a VectorHead over the vectors it reads
    make: Callable | None = None


@dataclass(frozen=True)
class Place:
    """Where a fusion-input vector's conv map lies on the slice (the fusion CAM, core.explain.fusion_cam)."""
    stage: str  # the model whose conv map it is
    input: str  # the batch key of that model's input
    box: str | None = None  # the batch key of the input's box on the slice (B, 4), or (B, sides, 4); None: the slice
    side: int | None = None  # a lung side's column in `box` and in the lesion flags (absent sides add nothing)


def _infected(backbone, sizes):
    return InfectedClassifier(backbone(), sizes()["g"], crops=CROPS, reads=(*(s.key for s in SIDES), "g"))


TABLE = (
    Branch("global", "global", "the global branch", ("image",), ("g",), ("g",), trains="global",
           make=lambda backbone, sizes: SliceClassifier(backbone(), key="image", vector="g")),
    Branch("heatmap", "heatmap", "the heatmap branch", ("crop",), ("h",), ("h",), trains="branch",
           make=lambda backbone, sizes: SliceClassifier(backbone(), key="crop", vector="h")),
    Branch("global+heatmap", "global+heatmap", "the global+heatmap head", (), (), ("g", "h")),
    # the infected branch: one backbone over both lung crops, its head over them and the frozen global vector
    Branch("global+infected", "infected", "the infected branch", (*CROPS, PRESENT, "g"),
           (*(s.key for s in SIDES), PRESENT), ("g", *(s.key for s in SIDES), PRESENT), trains="branch",
           make=_infected),
    Branch("fusion", "fusion", "the fusion head", (), (), None),
)
PLACES = {"g": Place("global", "image"), "h": Place("heatmap", "crop", "crop_box"),
          **{s.key: Place("infected", s.crop, "side_boxes", j) for j, s in enumerate(SIDES)}}
SEGMENTER = "infnet"  # the segmenter's stage folder (Algorithm 1); it finds the lesions the infected branch crops
TITLES = {**{b.stage: b.title for b in TABLE}, SEGMENTER: "the lesion segmenter"}  # every stage folder's title

BY_NAME = {b.name: b for b in TABLE}
BY_STAGE = {b.stage: b for b in TABLE}
NAMES = tuple(b.name for b in TABLE)  # the tables' order (the paper's)
KEYS = tuple(k for b in TABLE for k in b.produces)  # the fusion input
IMAGE_STAGES = tuple(b.stage for b in TABLE if b.trains)  # the branches trained on images, in training order
LESION_INPUTS = (*CROPS, PRESENT)  # the inputs cut by the segmenter: a branch reading one trains after it
# the run folder's stages in training order: the image branches (the segmenter before the first that reads its
# lesions), then the heads
_first_lesion = next(i for i, s in enumerate(IMAGE_STAGES) if set(BY_STAGE[s].inputs) & set(LESION_INPUTS))
STAGES = (*IMAGE_STAGES[:_first_lesion], SEGMENTER, *IMAGE_STAGES[_first_lesion:],
          *(b.stage for b in TABLE if not b.trains))
HEADS = {b.name: b.reads or KEYS for b in TABLE}  # each branch's head and the vectors it reads
VECTOR_HEADS = tuple(b.name for b in TABLE if not b.inputs)  # heads over cached vectors, trained last (stage = name)
# the 3D map's feature sets: what each branch itself contributes, by its stage's name
FEATURE_SETS = {b.stage: b.produces for b in TABLE if b.produces}
TAU_KEYS = BY_NAME["heatmap"].produces  # the vectors a new tau changes (the heatmap crop's)
TAU_BRANCHES = tuple(b.name for b in TABLE if set(HEADS[b.name]) & set(TAU_KEYS))  # ... and the heads that read them
assert all(BY_NAME[h].stage == h and not BY_NAME[h].trains for h in VECTOR_HEADS)
assert all((b.make is None) == (b.trains is None) for b in TABLE)  # a model of its own is trained on images
assert set(PLACES) == set(KEYS) - {PRESENT}  # every vector a conv map projects onto has its place on the slice


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

    def fusion_sizes() -> dict[str, int]:
        nonlocal vector_sizes
        if vector_sizes is None:
            if "global" not in models:
                raise ValueError(f"building {b.stage} needs the vector sizes (or the global branch built with it)")
            vector_sizes = sizes(models["global"].backbone.num_features)
        return vector_sizes

    for b in wanted:
        models[b.stage] = (b.make(backbone, fusion_sizes) if b.make
                           else VectorHead({k: fusion_sizes()[k] for k in HEADS[b.name]}))
    return models


def vectors(models: dict, batch: dict) -> dict:
    """Every branch's vector (KEYS) of one batch: each branch's model computes its own from its inputs (and the
    vectors before it: the infected branch reads the global one), unless the batch already holds them (a frozen
    branch's cached vectors, or vectors computed once elsewhere)."""
    out = {}
    for b in TABLE:
        if not b.produces:
            continue
        if all(k in batch for k in b.produces):
            out.update({k: batch[k] for k in b.produces})
        else:
            out.update(models[b.stage].vectors({**batch, **out}))
    return {k: out[k].float() for k in KEYS}


def logits(models: dict, v: dict) -> dict:
    """The logit (B,) of every branch among `models` from the fusion input `v`, in TABLE's order (in training
    mode each head applies its dropout, as in its own training)."""
    return {b.name: models[b.stage].logit(v) for b in TABLE if b.stage in models}
