"""Branch-information probe: does each branch add anything beyond global? (core/audits/branch_probe.py)

    python -m train probe --run runs/real-s0

Refits one logistic layer per set of cached branch vectors on the validation split only and scores
it on the test split, beside the trained branches' own test AUC. Writes RUN/branch_probe.csv (the
dashboard's Overview shows it) and prints one JSON object.
"""
from __future__ import annotations

import json

from core.audits.branch_probe import PROBE_FILE, probe
from core.results.metrics import auc
from core.results.predictions import read_predictions
from core.runs import feature_cache as fc
from core.runs.runfolder import RunError, RunFolder


def add_args(p):
    p.add_argument("--run", required=True)
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds inside the validation split")


def run(args) -> dict:
    folder = RunFolder(args.run)
    cached = fc.current(folder.features_dir, "fusion")
    if cached is None:
        raise RunError(f"{folder.path}: no fusion feature cache; run `python -m train pipeline` to the end first")
    preds = read_predictions(folder).set_index("key").loc[list(cached["keys"])]
    table = probe(cached["vectors"], preds["label"].to_numpy(), preds["split"].to_numpy(), folds=args.folds)
    test = preds[preds["split"] == "test"]
    table["trained_test_auc"] = [auc(test["label"], test[f"p_{b}"]) if f"p_{b}" in test else None for b in table.branch]
    table.to_csv(folder.path / PROBE_FILE, index=False)
    out = {"run": str(folder.path), "rows": table.round(4).to_dict("records")}
    if folder.config.get("synthetic"):
        out = {"data": "synthetic phantoms (not a real-data result)", **out}
    print(json.dumps(out))
    return out

