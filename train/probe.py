"""Branch-information probe: does each branch add anything beyond global? (core/audits/branch_probe.py)

    python -m train probe --run runs/real-s0

Refits one logistic layer per set of cached branch vectors on the validation split only and scores
it on the test split, beside the trained branches' own test AUC. Writes RUN/branch_probe.csv (the
dashboard's Overview shows it) and prints one JSON object. `train pipeline` runs it too
(core/after_training.py).
"""
from __future__ import annotations

import json

from core.audits.branch_probe import write_probe
from core.runs.runfolder import RunFolder


def add_args(p):
    p.add_argument("--run", required=True)
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds inside the validation split")


def run(args) -> dict:
    out = write_probe(RunFolder(args.run), folds=args.folds)
    print(json.dumps(out))
    return out
