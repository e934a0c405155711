"""Is a slice like the ones the network was trained on? Its distance from the training split in feature space.

Score: the Mahalanobis distance of a slice's standardised fusion-layer input (TrainedRun.fusion_vector; the run's
cached vectors for its own slices, RunView.features("fusion")) from the training split's rows, under their
Ledoit-Wolf shrunk covariance (1 - s) S + s mu I (Ledoit & Wolf 2004): with thousands of dimensions and a few
hundred training rows the sample covariance S is singular, the shrunk one is not. It is computed exactly in
the span of the training rows (a thin SVD); the part of a vector outside that span is measured against s mu.

Threshold, chosen on the validation split: the ceil((n + 1)(1 - ALPHA))-th smallest validation score (at most
the largest), a conformal test: a slice drawn like the validation slices is flagged with probability at most
`false_alarm_bound` (ALPHA when the split is large enough: n >= 1 / ALPHA - 1). A flagged slice is unlike
every split the network was trained and chosen on; its probability, map and prediction set extrapolate.
"""
from __future__ import annotations

import math

import numpy as np

ALPHA = 0.01
DISTANCE_COLUMN = "ood_distance"  # a table of scored slices (RUN/external.csv) carries each slice's distance here


def ledoit_wolf_shrinkage(xc: np.ndarray) -> float:
    """sklearn.covariance.ledoit_wolf_shrinkage of centred rows (n, d), from their (n, n) Gram matrix: O(n^2 d)
    instead of O(n d^2)."""
    n, d = xc.shape
    gram = xc @ xc.T
    row_sq = np.diag(gram)
    mu = row_sq.sum() / (n * d)
    delta_ = float((gram ** 2).sum()) / n ** 2  # ||S||_F^2
    beta_ = float((row_sq ** 2).sum())
    beta = (beta_ / n - delta_) / (d * n)
    delta = (delta_ - d * mu ** 2) / d
    beta = min(beta, delta)
    return 0.0 if beta == 0 else float(beta / delta)


class Mahalanobis:
    """Distance from rows (n, d) under their Ledoit-Wolf shrunk covariance."""

    def __init__(self, rows: np.ndarray):
        x = np.asarray(rows, np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"need at least two rows of vectors, got shape {x.shape}")
        self.mean = x.mean(0)
        xc = x - self.mean
        n, d = xc.shape
        self.shrinkage = ledoit_wolf_shrinkage(xc)
        mu = float((xc ** 2).sum() / (n * d))
        self.floor = self.shrinkage * mu  # the shrunk covariance's eigenvalue outside the rows' span
        if self.floor <= 0:
            raise ValueError("the rows do not vary (or shrinkage is 0): no covariance to measure distance by")
        _, sv, vt = np.linalg.svd(xc, full_matrices=False)
        keep = sv > sv.max() * 1e-10
        self.basis = vt[keep]  # (r, d)
        self.eig = (1 - self.shrinkage) * sv[keep] ** 2 / n + self.floor

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        """(m,) distances of (m, d) vectors (or one (d,) vector)."""
        z = np.atleast_2d(np.asarray(vectors, np.float64)) - self.mean
        proj = z @ self.basis.T
        inside = (proj ** 2 / self.eig).sum(1)
        outside = np.clip((z ** 2).sum(1) - (proj ** 2).sum(1), 0, None) / self.floor
        return np.sqrt(inside + outside)


def conformal_threshold(scores: np.ndarray, alpha: float = ALPHA) -> tuple[float, float]:
    """(threshold, false-alarm bound): the ceil((n + 1)(1 - alpha))-th smallest score, at most the largest."""
    s = np.sort(np.asarray(scores, np.float64))
    n = len(s)
    if n == 0:
        raise ValueError("no validation scores to choose a threshold on")
    k = min(n, math.ceil((n + 1) * (1 - alpha)))
    return float(s[k - 1]), 1 - k / (n + 1)


class OodFlag:
    """Fitted on the training split's vectors, threshold chosen on the validation split's."""

    def __init__(self, train: np.ndarray, val: np.ndarray, alpha: float = ALPHA):
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
        self.distance = Mahalanobis(train)
        self.alpha, self.n_train, self.n_val = alpha, len(train), len(val)
        self.threshold, self.false_alarm_bound = conformal_threshold(self.distance(val), alpha)

    def score(self, vectors: np.ndarray) -> np.ndarray:
        return self.distance(vectors)

    def flag(self, vectors: np.ndarray) -> np.ndarray:
        """(m,) bool: True where a vector lies farther from the training split than the threshold."""
        return self.score(vectors) > self.threshold

    def rule(self) -> str:
        return (f"flagged when the Ledoit-Wolf Mahalanobis distance from the {self.n_train} training slices exceeds "
                f"{self.threshold:.1f}, the ceil((n + 1)(1 - {self.alpha}))-th smallest of the {self.n_val} validation "
                f"slices' distances (false alarms at most {self.false_alarm_bound:.3f} on slices like them)")


def run_vectors(run) -> dict[str, np.ndarray]:
    """{split: the run's cached standardised fusion-layer inputs of that split's slices} (core.runs.run_view)."""
    from core.runs.run_view import RunView

    view = RunView(run.path.parent, run.path.name)
    x = view.features("fusion")
    split = view.predictions.set_index("key")["split"]
    splits = np.array([split.get(k, "") for k in view.feature_keys])
    return {s: x[splits == s] for s in ("train", "val", "test")}


def fit_run(run, alpha: float = ALPHA) -> OodFlag:
    """The flag of a run: fitted on its training slices, threshold on its validation slices."""
    v = run_vectors(run)
    return OodFlag(v["train"], v["val"], alpha)


def describe(distance: float, flagged: bool, threshold: float) -> str:
    """A slice's flag in plain words."""
    if flagged:
        return (f"Unlike the training slices (distance {distance:.1f}, threshold {threshold:.1f}): the network has "
                "not seen inputs like this; read its probability and map with care.")
    return f"Like the training slices (distance {distance:.1f}, threshold {threshold:.1f})."
