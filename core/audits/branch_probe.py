"""Does a branch add information beyond the global one? Held-out stacking on the validation split.

The fusion layer is trained on training-split vectors, where every branch has already fitted its
labels, so its gain over the global branch mixes two things: what the extra branches know, and how
badly a layer stacked on fitted vectors generalises. This probe separates them. For each set of
branch vectors (global alone, global+heatmap, global+infected, all) it fits one L2-regularised
logistic layer on the *validation* vectors only, the L2 strength chosen by stratified k-fold
cross-validation inside the validation split, and scores it on the test split. If a set that adds a
branch does not beat global alone here, that branch carries nothing the global branch lacks, and no
fusion layer can make it help.

The operating point is Youden's J on the out-of-fold validation probabilities, as in evaluate.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.models.network import HEADS
from core.results.metrics import auc, youden_threshold
from core.runs.checkpoint import atomic_write_text

# each trained branch that reads the global vector, and the cached vectors its layer reads (core.models.network)
SETS = {name: keys for name, keys in HEADS.items() if "g" in keys}
PROBE_FILE = "branch_probe.csv"  # in the run folder
C_GRID = np.logspace(-4, 0, 9)


def probe(vectors: dict, labels, splits, folds: int = 5, seed: int = 0) -> pd.DataFrame:
    """vectors: name -> (N, d) array/tensor (names as in SETS); labels (N,) 0/1; splits (N,) of
    "train"/"val"/"test". One row per vector set, named after the trained branch that reads it:
    chosen C, out-of-fold validation AUC, test AUC, accuracy, sensitivity and specificity at the
    validation operating point."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y, splits = np.asarray(labels).astype(int), np.asarray(splits)
    va, te = splits == "val", splits == "test"
    if min(np.bincount(y[va], minlength=2)) < folds or len(set(y[te])) < 2:
        raise ValueError(f"probe needs at least {folds} slices of each class in val and both classes in test")
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    rows = []
    for name, keys in SETS.items():
        missing = [k for k in keys if k not in vectors]
        if missing:
            raise ValueError(f"vector set {name!r} needs {missing}; have {sorted(vectors)}")
        x = np.concatenate([np.asarray(vectors[k], dtype=np.float64).reshape(len(y), -1) for k in keys], 1)
        layer = lambda c: make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
        # every C's out-of-fold probabilities; the lowest log-loss picks C, its probabilities set the threshold
        oofs = {c: cross_val_predict(layer(c), x[va], y[va], cv=cv, method="predict_proba")[:, 1] for c in C_GRID}
        c = min(C_GRID, key=lambda c: log_loss(y[va], oofs[c]))
        oof = oofs[c]
        p_test = layer(c).fit(x[va], y[va]).predict_proba(x[te])[:, 1]
        pred, yt = p_test >= youden_threshold(y[va], oof), y[te]
        rows.append({"branch": name, "dims": x.shape[1], "C": float(c), "val_oof_auc": auc(y[va], oof),
                     "test_auc": auc(yt, p_test), "test_accuracy": float((pred == yt).mean()),
                     "test_sensitivity": float(pred[yt == 1].mean()), "test_specificity": float((~pred[yt == 0]).mean())})
    return pd.DataFrame(rows)


def write_probe(run, folds: int = 5) -> dict:
    """`probe` of the run folder `run` (core.runs.runfolder.RunFolder) on its cached fusion vectors, beside each
    trained branch's own test AUC: written to RUN/PROBE_FILE; returns the JSON the command prints."""
    from core.results.predictions import read_predictions
    from core.runs import feature_cache as fc
    from core.runs.runfolder import RunError

    cached = fc.current(run.features_dir, "fusion")
    if cached is None:
        raise RunError(f"{run.path}: no fusion feature cache; run `python -m train pipeline` to the end first")
    preds = read_predictions(run).set_index("key").loc[list(cached["keys"])]
    try:
        table = probe(cached["vectors"], preds["label"].to_numpy(), preds["split"].to_numpy(), folds=folds)
    except ValueError as exc:  # the cached slices cannot be cut into the folds, or lack a vector set
        raise RunError(f"{run.path}: {exc}") from None
    test = preds[preds["split"] == "test"]
    table["trained_test_auc"] = [auc(test["label"], test[f"p_{b}"]) if f"p_{b}" in test else None for b in table.branch]
    atomic_write_text(run.path / PROBE_FILE, table.to_csv(index=False))
    out = {"run": str(run.path), "rows": table.round(4).to_dict("records")}
    return {"data": "synthetic phantoms (not a real-data result)", **out} if run.config.get("synthetic") else out
