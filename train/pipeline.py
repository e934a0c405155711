"""Algorithm 2 end to end into one run folder (strategy G-H-I-F), every stage cached and resumable.

    python -m train pipeline --data-root ../shared/data --backbone efficientnet_lite0 --strategy G-H-I-F --out runs/lite0
    python -m train pipeline --out runs/demo --epochs 3          # synthetic phantoms, short schedule
    python -m train evaluate --run runs/lite0 --split test       # then: every branch's metrics
"""
from __future__ import annotations

import json

from core.config import STRATEGIES, SegConfig
from core.errors import UsageError
from core.explain.cams import CAM_METHODS, DEFAULT_CAM

from .common import add_config_args, config_from_args
from .global_branch import add_model_args, open_pipeline


def add_args(p):
    add_model_args(p)
    p.add_argument("--strategy", default="G-H-I-F", choices=STRATEGIES)
    p.add_argument("--tau", type=float, default=0.75, help="Eq. 2 threshold of the heatmap branch")
    p.add_argument("--cam", default=DEFAULT_CAM, choices=sorted(CAM_METHODS), help="attention map for the heatmap crops")
    p.add_argument("--segmenter", default=None, help="reuse a segmenter checkpoint (from `python -m train infnet`) "
                                                      "instead of running Algorithm 1 in this run")
    p.add_argument("--branch-epochs", type=int, default=None,
                   help="epochs of the heatmap and infected stages (default: --epochs, else the recipe's)")
    p.add_argument("--branch-init", default="global", choices=("global", "init"),
                   help="heatmap/infected backbones start from the trained global backbone, or from --init")
    # --seg-size, --seg-epochs, --seg-max-rounds, --no-seg-tta ...: one flag per SegConfig field
    add_config_args(p, SegConfig, prefix="seg-", title="segmenter, Algorithm 1 (core.config.SegConfig)")


def run(args):
    if not 0 <= args.tau <= 1:
        raise UsageError(f"--tau must lie in [0, 1], got {args.tau}")
    seg = config_from_args(args, SegConfig, prefix="seg-")
    pipe = open_pipeline(args, tau=args.tau, cam=args.cam, strategy=args.strategy, seg=seg,
                         segmenter=args.segmenter, branch_init=args.branch_init, branch_epochs=args.branch_epochs)
    timings = pipe.run_all()
    print(json.dumps({"run": str(pipe.run.path), "seconds": timings}))
    return 0
