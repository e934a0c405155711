"""Binary classification metrics with 95% intervals.

Proportions (accuracy, sensitivity, specificity) get Wilson score intervals; AUC and F1 get a
percentile bootstrap over slices (stratified, so every resample holds both classes).
"""
from __future__ import annotations

import math

import numpy as np
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
    both = len(ip) > 0 and len(ineg) > 0
    for _ in range(n_boot if both else 0):
        idx = np.concatenate([rng.choice(ip, len(ip)), rng.choice(ineg, len(ineg))])
        aucs.append(roc_auc_score(y[idx], p[idx]))
        f1s.append(_f1(y[idx], pred[idx]))
    ci = lambda v: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if v else [float("nan")] * 2
    out["auc"] = {"value": auc(y, p), "ci": ci(aucs)}
    out["f1"] = {"value": _f1(y, pred), "ci": ci(f1s)}
    out["n"] = int(len(y))
    return out
