"""Evaluate every trained branch of a run on one split; prints one JSON object.

    python -m train evaluate --run runs/lite0 --split test
"""
from __future__ import annotations

import json

from core.errors import UsageError
from core.predictions import evaluate_run
from core.runfolder import RunFolder


def add_args(p):
    p.add_argument("--run", required=True)
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--threshold", default="val",
                   help="'val': each branch's operating point chosen on the validation split (Youden's J); "
                        "or a number, e.g. 0.5")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the AUC/F1 intervals")


def run(args) -> dict:
    folder = RunFolder(args.run)
    if args.threshold != "val":
        try:
            if not 0 <= float(args.threshold) <= 1:
                raise ValueError
        except ValueError:
            raise UsageError(f"--threshold must be 'val' or a number in [0, 1], got {args.threshold!r}")
    out = evaluate_run(folder, args.split, n_boot=args.bootstrap, threshold=args.threshold)
    if folder.config.get("synthetic"):
        out = {"data": "synthetic phantoms (not a real-data result)", **out}
    print(json.dumps(out))
    return out
