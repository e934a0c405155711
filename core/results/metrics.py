"""Binary classification metrics with 95% intervals.

Proportions (accuracy, sensitivity, specificity) get Wilson score intervals; AUC and F1 get a
percentile bootstrap over slices (stratified, so every resample holds both classes).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

Z95 = 1.959963984540054


METRICS = ("accuracy", "f1", "auc", "sensitivity", "specificity")  # what every metric table shows


def wilson(successes: int, n: int, z: float = Z95) -> list[float]:
    if n == 0:
        return [float("nan"), float("nan")]
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At 0 or n successes the bound is exactly 0 or 1; the formula leaves rounding dust there.
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return [lo, hi]


def _f1(y: np.ndarray, pred: np.ndarray) -> float:
    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def auc(y, p) -> float:
    y = np.asarray(y)
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")


def youden_threshold(y, p) -> float:
    """The probability cut that maximises Youden's J (sensitivity + specificity - 1), within [0, 1]."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(np.asarray(y).astype(int), np.asarray(p, dtype=float))
    return float(min(max(thr[int(np.argmax(tpr - fpr))], 0.0), 1.0))


def binary_metrics(y, p, threshold: float = 0.5, n_boot: int = 1000, seed: int = 0) -> dict:
    """{"auc": {"value": v, "ci": [lo, hi]}, "accuracy": ..., "f1": ..., "sensitivity": ..., "specificity": ..., "n": N}"""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    if y.shape != p.shape or y.ndim != 1 or len(y) == 0:
        raise ValueError(f"labels and probabilities must be equal-length 1-D arrays (got {y.shape}, {p.shape})")
    pred = (p >= threshold).astype(int)
    pos, neg = y == 1, y == 0
    correct = int((pred == y).sum())
    tp, tn = int((pred[pos] == 1).sum()), int((pred[neg] == 0).sum())
    out = {
        "accuracy": {"value": correct / len(y), "ci": wilson(correct, len(y))},
        "sensitivity": {"value": tp / pos.sum() if pos.any() else float("nan"), "ci": wilson(tp, int(pos.sum()))},
        "specificity": {"value": tn / neg.sum() if neg.any() else float("nan"), "ci": wilson(tn, int(neg.sum()))},
    }
    rng = np.random.default_rng(seed)
    ip, ineg = np.nonzero(pos)[0], np.nonzero(neg)[0]
    aucs, f1s = [], []
    if len(ip) and len(ineg) and n_boot:
        # stratified resamples, drawn in the order a per-resample loop draws them; scored all at once
        draws = [(rng.choice(ip, len(ip)), rng.choice(ineg, len(ineg))) for _ in range(n_boot)]
        bp, bn = np.stack([d[0] for d in draws]), np.stack([d[1] for d in draws])
        n1, n0 = len(ip), len(ineg)
        ranks = rankdata(np.concatenate([p[bp], p[bn]], axis=1), axis=1)  # ties share their mean rank
        aucs = list((ranks[:, :n1].sum(1) - n1 * (n1 + 1) / 2) / (n1 * n0))
        tp_b, fn_b, fp_b = pred[bp].sum(1), n1 - pred[bp].sum(1), pred[bn].sum(1)
        f1s = list(np.where(tp_b > 0, 2 * tp_b / np.maximum(2 * tp_b + fp_b + fn_b, 1), 0.0))
    ci = lambda v: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if len(v) else [float("nan")] * 2
    out["auc"] = {"value": auc(y, p), "ci": ci(aucs)}
    out["f1"] = {"value": _f1(y, pred), "ci": ci(f1s)}
    out["n"] = int(len(y))
    return out
