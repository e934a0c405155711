"""Algorithm 2 end to end into one run folder (strategy G-H-I-F), every stage cached and resumable.

    python -m train pipeline --data-root ../shared/data --backbone efficientnet_lite0 --strategy G-H-I-F --out runs/lite0
    python -m train pipeline --out runs/demo --epochs 3          # synthetic phantoms, short schedule
    python -m train evaluate --run runs/lite0 --split test       # then: every branch's metrics
"""
from __future__ import annotations

import json

from core.cams import CAM_METHODS, DEFAULT_CAM
from core.pipeline import STRATEGIES, PipelineConfig

from .common import rounds_arg
from .global_branch import add_model_args, open_pipeline


def add_args(p):
    add_model_args(p)
    p.add_argument("--strategy", default="G-H-I-F", choices=STRATEGIES)
    p.add_argument("--tau", type=float, default=0.75, help="Eq. 2 threshold of the heatmap branch")
    p.add_argument("--cam", default=DEFAULT_CAM, choices=sorted(CAM_METHODS), help="attention map for the heatmap crops")
    seg = PipelineConfig().seg
    p.add_argument("--seg-epochs", type=int, default=seg["epochs"], help="segmenter epochs on the labelled slices")
    p.add_argument("--seg-steps-per-round", type=int, default=seg["steps_per_round"],
                   help="segmenter optimiser steps per pseudo-label round")
    p.add_argument("--seg-polish-epochs", type=int, default=seg["polish_epochs"], help="labelled-only epochs after the rounds")
    p.add_argument("--seg-max-rounds", type=rounds_arg, default=seg["max_rounds"],
                   help="pseudo-label rounds of Algorithm 1, or 'all' (until every pool slice is labelled)")
    p.add_argument("--seg-size", type=int, default=seg["size"])
    p.add_argument("--no-seg-tta", action="store_true", help="no mirrored second pass when segmenting")
    p.add_argument("--segmenter", default=None, help="reuse a segmenter checkpoint (from `python -m train infnet`) "
                                                      "instead of running Algorithm 1 in this run")
    p.add_argument("--branch-epochs", type=int, default=None,
                   help="epochs of the heatmap and infected stages (default: the recipe's, or --epochs)")
    p.add_argument("--branch-init", default="global", choices=("global", "init"),
                   help="heatmap/infected backbones start from the trained global backbone, or from --init")


def run(args):
    if not 0 <= args.tau <= 1:
        raise SystemExit(f"--tau must lie in [0, 1], got {args.tau}")
    seg = {**PipelineConfig().seg, "size": args.seg_size, "epochs": args.seg_epochs,
           "steps_per_round": args.seg_steps_per_round, "max_rounds": args.seg_max_rounds,
           "polish_epochs": args.seg_polish_epochs, "tta": not args.no_seg_tta}
    pipe = open_pipeline(args, tau=args.tau, cam=args.cam, strategy=args.strategy, seg=seg,
                         segmenter=args.segmenter, branch_init=args.branch_init, branch_epochs=args.branch_epochs)
    timings = pipe.run_all()
    print(json.dumps({"run": str(pipe.run.path), "seconds": timings}))
    return 0
