"""What the Overview plots of a run's predictions on one split: ROC curves per branch, the decision
branch's confusion matrix, reliability (calibration) bins per branch.

Inputs are RunView.predictions frames (columns split, label, pred and p_<branch>) and the branches to
draw; nothing here reads a run folder or draws anything, so the numbers can be checked without a UI.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.results.metrics import auc

CALIBRATION_COLUMNS = ["branch", "bin", "mean_p", "observed", "n"]


def confusion_counts(y, pred) -> np.ndarray:
    """[[TN, FP], [FN, TP]] of 0/1 labels and decisions (rows: truth, columns: decision)."""
    m = np.zeros((2, 2), int)
    np.add.at(m, (np.asarray(y).astype(int), np.asarray(pred).astype(int)), 1)
    return m


def reliability(y, p, n_bins: int = 10) -> pd.DataFrame:
    """Equal-width probability bins on [0, 1] (bin k holds edges[k] <= p < edges[k+1], the last one
    1.0 too): mean predicted probability, observed positive fraction and count of each non-empty bin."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
    rows = [{"bin": k, "mean_p": float(p[idx == k].mean()), "observed": float(y[idx == k].mean()),
             "n": int((idx == k).sum())} for k in range(n_bins) if (idx == k).any()]
    return pd.DataFrame(rows, columns=CALIBRATION_COLUMNS[1:])


def _part(df: pd.DataFrame, split: str) -> pd.DataFrame:
    return df[df.split == split]


def roc_curves(df: pd.DataFrame, split: str, branches) -> dict[str, dict]:
    """{branch: {"fpr": [...], "tpr": [...], "auc": float}} on `split`; {} when it holds a single class."""
    from sklearn.metrics import roc_curve

    part = _part(df, split)
    if part.label.nunique() < 2:
        return {}
    out = {}
    for b in branches:
        y, p = part.label.to_numpy(), part[f"p_{b}"].to_numpy()
        fpr, tpr, _ = roc_curve(y, p)
        out[b] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "auc": auc(y, p)}
    return out


def confusion(df: pd.DataFrame, split: str) -> np.ndarray:
    """confusion_counts of the decision branch (column `pred`) on `split`."""
    part = _part(df, split)
    return confusion_counts(part.label, part.pred)


def calibration(df: pd.DataFrame, split: str, branches, n_bins: int = 10) -> pd.DataFrame:
    """reliability of each branch on `split`, one frame: branch, bin, mean_p, observed, n."""
    part = _part(df, split)
    frames = [reliability(part.label, part[f"p_{b}"], n_bins).assign(branch=b) for b in branches]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=CALIBRATION_COLUMNS)
    return pd.concat(frames, ignore_index=True)[CALIBRATION_COLUMNS]
