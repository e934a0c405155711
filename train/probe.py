"""Branch-information probe: does each branch add anything beyond global? (core/audits/branch_probe.py)

    python -m train probe --run runs/real-s0

Refits one logistic layer per set of cached branch vectors on the validation split only and scores
it on the test split, beside the trained branches' own test AUC. Writes RUN/branch_probe.csv (the
dashboard's Overview shows it) and prints one JSON object. `train pipeline` runs it too
(core/after_training.py).
"""
from __future__ import annotations

import json

import numpy as np

from core.audits.branch_probe import write_probe
from core.errors import UsageError
from core.results.predictions import read_predictions
from core.runs.runfolder import RunFolder

MIN_FOLDS = 2  # cross-validation needs a part to fit on and one to score


def add_args(p):
    p.add_argument("--run", required=True)
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds inside the validation split")


def check_folds(folder: RunFolder, folds: int) -> None:
    """--folds the run's validation split can be cut into: each fold needs a slice of each class. Said before
    the probe starts; a run without predictions is left to write_probe, which names what is missing."""
    if not folder.predictions_csv.exists():
        return
    val = read_predictions(folder).query("split == 'val'")
    smallest = int(np.bincount(val["label"].astype(int), minlength=2).min())
    if folds > smallest:
        advice = f"use at most {smallest} folds" if smallest >= MIN_FOLDS else f"the probe needs {MIN_FOLDS}"
        raise UsageError(f"--folds {folds}: the validation split of {folder.path} holds only {smallest} slice(s) "
                         f"of its smaller class; {advice}")


def run(args) -> dict:
    if args.folds < MIN_FOLDS:
        raise UsageError(f"--folds must be at least {MIN_FOLDS}, got {args.folds}")
    folder = RunFolder(args.run)
    check_folds(folder, args.folds)
    out = write_probe(folder, folds=args.folds)
    print(json.dumps(out))
    return out
