"""What a pipeline run will train, in order, with the numbers its ETA needs (core.runs.eta): the progress
log's plan (core.runs.progress), written when `Pipeline.run_all` starts.

The order is core.pipeline's: the segmenter trains first when the global branch needs its lesion maps
(input lungs+lesions, a lesion-attention loss, a second source labelled by it) and for the joint
strategies, else after the heatmap branch (the infected branch's lesion crops). A segmenter adopted
from elsewhere (`--segmenter`) trains nothing and is not planned. Images per epoch count COVID-CT's
training rows; a stage that also trains on the second source's rows says so at its start.
"""
from __future__ import annotations

import math

from core.inputs.fields import needs_segmenter


def segmenter_rounds(seg, pool: int) -> int:
    """Pseudo-label rounds Algorithm 1 runs over an unlabelled pool of `pool` slices (SegConfig `seg`)."""
    possible = math.ceil(pool / seg.per_round) if seg.per_round > 0 else 0
    return possible if seg.max_rounds is None else min(seg.max_rounds, possible)


def _per_pass(n: int, batch_size: int) -> int:
    """Images one epoch over `n` rows sees (core.training: the ragged last batch is dropped)."""
    bs = min(batch_size, n)
    return max(1, n // bs) * bs if n else 0


def segmenter_images(seg, n_labelled: int, pool: int) -> int:
    """Slices Algorithm 1 (core.training.segmentation.semi_supervised) trains on, counted with repeats:
    round 0, each pseudo-label round (its step budget, or its passes over the grown set), the polish.
    Its pseudo-labelling and test-scoring passes are not training and not counted."""
    total = seg.epochs * _per_pass(n_labelled, seg.batch_size)
    for k in range(1, segmenter_rounds(seg, pool) + 1):
        n = n_labelled + min(k * seg.per_round, pool)
        total += (seg.steps_per_round * min(seg.batch_size, n) if seg.steps_per_round
                  else seg.epochs_per_round * _per_pass(n, seg.batch_size))
    return total + seg.polish_epochs * _per_pass(n_labelled, seg.batch_size)


def segmenter_parts(seg, pool: int) -> list[str]:
    rounds = segmenter_rounds(seg, pool)
    return [f"round {k}" for k in range(rounds + 1)] + (["polish"] if seg.polish_epochs > 0 else [])


def segmenter_first(pipe) -> bool:
    """Whether the global branch (or the joint network) needs the segmenter's lesion maps."""
    cfg, recipe = pipe.cfg, pipe.recipe
    return (cfg.strategy != "G-H-I-F" or needs_segmenter(cfg.input) or cfg.second_source != "none"
            or bool(recipe.guided and recipe.guide_lesion))


def stage_recipe(pipe, stage: str):
    """The recipe a branch's stage trains with (core.models.network.Branch.trains): the run's recipe
    (`pipe.recipe`) or the branches' (`pipe.branch_recipe`)."""
    from core.models.network import BY_STAGE

    return {"global": pipe.recipe, "branch": pipe.branch_recipe}[BY_STAGE[stage].trains]


def pipeline_plan(pipe) -> list[dict]:
    """The stages `pipe` (a core.pipeline.Pipeline) will train, in order: stage, kind, epochs, patience,
    images_per_epoch (planned_images and parts for the segmenter)."""
    from core.data.semiseg import read_labelled, unlabelled_pool
    from core.models import network
    from core.training.recipes import VECTOR_RECIPE

    cfg, n = pipe.cfg, len(pipe.split_rows("train"))

    def stage(name, kind, recipe):
        return {"stage": name, "kind": kind, "epochs": recipe.epochs, "patience": recipe.patience or None,
                "images_per_epoch": _per_pass(n, recipe.batch_size)}

    segmenter = []
    if not cfg.segmenter:
        pool = len(unlabelled_pool(pipe.data_root, cfg.seg.sources))
        segmenter = [{"stage": network.SEGMENTER, "kind": "segmenter", "epochs": None, "patience": None,
                      "planned_images": segmenter_images(cfg.seg, len(read_labelled(pipe.data_root, "train")), pool),
                      "parts": segmenter_parts(cfg.seg, pool)}]
    # GHIF trains its fusion layer inside the joint network
    heads = [stage(head, "vector", VECTOR_RECIPE) for head in network.VECTOR_HEADS
             if not (head == "fusion" and cfg.strategy == "GHIF")]
    if cfg.strategy != "G-H-I-F":
        return [*segmenter, stage("joint", "image", pipe.recipe), *heads]
    first = segmenter_first(pipe)
    plan = list(segmenter) if first else []
    for s in network.STAGES:  # the branches in training order, the segmenter in its place unless trained first
        if s in network.IMAGE_STAGES:
            plan.append(stage(s, "image", stage_recipe(pipe, s)))
        elif s == network.SEGMENTER and not first:
            plan += segmenter
    return plan + heads
