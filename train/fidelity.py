"""Explanation fidelity of a trained run on lesion-masked COVID slices (COVID-SemiSeg test, 48 slices).

    python -m train fidelity --run runs/lite0
    python -m train fidelity --run runs/lite0 --methods eq1,gradcam,scorecam --limit 5

One row per branch x map: pointing game (the map's maximum inside the lesion mask dilated by
--tolerance pixels; Wilson 95% interval), energy share inside the mask (mean +- std), deletion AUC
(most salient pixels removed in 10% steps; lower = more faithful), and the same numbers for a
centre-Gaussian, a uniform (= pixel-random deletion order) and a smooth random ("random-blobs")
map as chance levels. Branches: global (every CAM method), heatmap (every CAM method on its crop,
pasted into the crop box) and fusion (the fusion CAM); deletion curves for global and fusion by
default (--deletion; they are most of the run time). Definitions in core/explain/fidelity.py. Writes
runs/NAME/fidelity.json and fidelity.csv and prints the JSON. ScoreCAM is slow on CPU: it runs
only when named in --methods. `train pipeline` runs it too, at this command's default sizes (core/after_training.py).
"""
from __future__ import annotations

import argparse
import json

from core.explain.cams import CAM_METHODS
from core.explain.fidelity import (
    BRANCHES,
    DEFAULT_DELETION,
    DEFAULT_METHODS,
    FILLS,
    STEPS,
    TOLERANCE_PX,
    write_fidelity,
)
from core.runs.runfolder import RunFolder

from .common import cam_methods, nonnegative_int, pick_device, positive_int, run_data_root


def _branches(text: str) -> list[str]:
    if text.strip() == "none":
        return []
    names = [b.strip() for b in text.split(",") if b.strip()]
    bad = [b for b in names if b not in BRANCHES]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"unknown branch(es) {', '.join(bad) or '(none given)'}; "
                                         f"choose from {', '.join(BRANCHES)}, or 'none'")
    return names


def add_args(p):
    p.add_argument("--run", required=True, help="a run folder trained by `python -m train pipeline`")
    p.add_argument("--data-root", default=None,
                   help="folder holding semiseg/ (default: the run's data_root from its config.json)")
    p.add_argument("--methods", type=cam_methods, default=list(DEFAULT_METHODS),
                   help=f"comma-separated CAM methods (default {','.join(DEFAULT_METHODS)}; "
                        f"available: {','.join(CAM_METHODS)})")
    p.add_argument("--limit", type=positive_int, default=None, help="only the first N labelled slices")
    p.add_argument("--tolerance", type=float, default=TOLERANCE_PX,
                   help="pointing-game tolerance: mask dilation in pixels at the mask's resolution")
    p.add_argument("--steps", type=positive_int, default=STEPS, help="deletion steps (10 = 10%% each)")
    p.add_argument("--deletion", type=_branches, default=list(DEFAULT_DELETION),
                   help=f"branches that get a deletion curve, comma-separated, or 'none' (default "
                        f"{','.join(DEFAULT_DELETION)}; heatmap = on its crop). Deletion is most of the run time")
    p.add_argument("--fill", choices=FILLS, default="mean", help="value of deleted pixels: slice mean or 0")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="seed of the random baselines and of the deletion order's tie-breaks")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")


def run(args) -> dict:
    folder = RunFolder(args.run)
    out = write_fidelity(folder, run_data_root(folder, args.data_root), args.methods, limit=args.limit,
                         tolerance_px=args.tolerance, steps=args.steps, fill=args.fill, deletion=args.deletion,
                         seed=args.seed, device=pick_device(args.device), progress=not args.no_progress)
    print(json.dumps(out))
    return out
