"""Is a slice like the ones the network was trained on? Two checks, each with a conformal threshold (OodFlag):

- to the network: its distance from the training split in the fusion feature space (below);
- in the image: a lung field, and the slice's statistics (core.trust.image_check), since a network trained to
  tell COVID from non-COVID maps inputs that are no chest CT close to its training slices.

Network score: the Mahalanobis distance of a slice's standardised fusion-layer input (TrainedRun.fusion_vector;
the run's cached vectors for its own slices, RunView.features("fusion")) from the training split's rows, under their
Ledoit-Wolf shrunk covariance (1 - s) S + s mu I (Ledoit & Wolf 2004): with thousands of dimensions and a few
hundred training rows the sample covariance S is singular, the shrunk one is not. It is computed exactly in
the span of the training rows (a thin SVD); the part of a vector outside that span is measured against s mu.

Threshold, chosen on the validation split: the ceil((n + 1)(1 - a))-th smallest validation score (at most
the largest), a conformal test: a slice drawn like the validation slices is flagged with probability at most
`false_alarm_bound` (a when the split is large enough: n >= 1 / a - 1). Each check takes a = ALPHA / 2. A
flagged slice is unlike every split the network was trained and chosen on; its probability, map and prediction
set extrapolate.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from core.trust.image_check import STATISTICS, SliceStatistics, measure_file

ALPHA = 0.01
# a table of assessed slices (OodFlag.assess; RUN/external.csv) carries these columns
NETWORK_COLUMN = "ood_network"  # the fusion-layer distance, as a multiple of its threshold
IMAGE_COLUMN = "ood_image"  # the image statistics' distance, as a multiple of its threshold (NaN: no lung field)
LUNGS_COLUMN = "ood_lungs"  # a lung field was found
FLAG_COLUMN = "ood"  # flagged: unlike the slices the run was trained on
WHY_COLUMN = "ood_why"  # why, in words ("" when not flagged)
COLUMNS = (NETWORK_COLUMN, IMAGE_COLUMN, LUNGS_COLUMN, FLAG_COLUMN, WHY_COLUMN)


def ledoit_wolf_shrinkage(xc: np.ndarray, gram: np.ndarray | None = None) -> float:
    """sklearn.covariance.ledoit_wolf_shrinkage of centred rows (n, d), from their (n, n) Gram matrix (`gram`,
    when the caller has it): O(n^2 d) instead of O(n d^2)."""
    n, d = xc.shape
    gram = xc @ xc.T if gram is None else gram
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
        gram = xc @ xc.T
        self.shrinkage = ledoit_wolf_shrinkage(xc, gram)
        mu = float((xc ** 2).sum() / (n * d))
        self.floor = self.shrinkage * mu  # the shrunk covariance's eigenvalue outside the rows' span
        if self.floor <= 0:
            raise ValueError("the rows do not vary (or shrinkage is 0): no covariance to measure distance by")
        # The rows' span from the Gram matrix's eigenvectors, which ledoit_wolf_shrinkage needs anyway: on 425 x
        # 5122 fusion-layer inputs (one thread) 0.12 s against an SVD's 0.36 s. Directions below the cut have a
        # variance far under the floor, so leaving them to the floor changes no distance.
        sq, u = np.linalg.eigh(gram)
        keep = sq > sq.max() * 1e-9
        self.basis = (u[:, keep].T @ xc) / np.sqrt(sq[keep])[:, None]  # (r, d), orthonormal rows
        self.eig = (1 - self.shrinkage) * sq[keep] / n + self.floor

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


class Check:
    """One distance with its conformal threshold: fitted on the training rows, threshold on the validation rows.
    `standardise`: scale each column by the training rows' spread first (statistics of unlike units)."""

    def __init__(self, train: np.ndarray, val: np.ndarray, alpha: float, standardise: bool = False):
        train, val = np.asarray(train, np.float64), np.asarray(val, np.float64)
        self.centre = train.mean(0) if standardise else 0.0
        self.scale = train.std(0) + 1e-12 if standardise else 1.0
        self.distance = Mahalanobis(self._z(train))
        self.n_train, self.n_val = len(train), len(val)
        self.threshold, self.false_alarm_bound = conformal_threshold(self.distance(self._z(val)), alpha)

    def _z(self, x):
        return (np.atleast_2d(np.asarray(x, np.float64)) - self.centre) / self.scale

    def relative(self, x: np.ndarray) -> np.ndarray:
        """(m,) distances as multiples of the threshold: above 1 is flagged."""
        return self.distance(self._z(x)) / self.threshold


class OodFlag:
    """Two checks, each at alpha / 2, so that a slice drawn like the validation slices is flagged with probability
    at most alpha (the union bound): the network's (its standardised fusion-layer inputs) and the image's
    (core.trust.image_check: a lung field, and the slice's statistics). Each fitted on the training split, its
    threshold chosen on the validation split."""

    def __init__(self, network: tuple[np.ndarray, np.ndarray], image: tuple[np.ndarray, np.ndarray],
                 alpha: float = ALPHA, val_without_lungs: int = 0):
        """`image`: the statistics of the training and validation slices with a lung field; `val_without_lungs`:
        how many validation slices had none (each is a false alarm of the lung-field rule)."""
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
        self.alpha, self.val_without_lungs = alpha, val_without_lungs
        self.network = Check(*network, alpha / 2)
        self.image = Check(*image, alpha / 2, standardise=True)
        self.false_alarm_bound = self.network.false_alarm_bound + self.image.false_alarm_bound

    @property
    def n_train(self) -> int:
        return self.network.n_train

    @property
    def n_val(self) -> int:
        return self.network.n_val

    def assess(self, vectors: np.ndarray, stats: list[SliceStatistics]) -> pd.DataFrame:
        """One row per slice (its fusion-layer input and its image statistics, in the same order): COLUMNS."""
        if len(np.atleast_2d(vectors)) != len(stats):
            raise ValueError(f"{len(np.atleast_2d(vectors))} vectors but {len(stats)} slices' statistics")
        net = self.network.relative(vectors)
        found = np.array([s.lungs_found for s in stats], bool)
        img = np.full(len(stats), np.nan)
        if found.any():
            img[found] = self.image.relative(np.stack([s.values for s in stats])[found])
        ood = (net > 1) | ~found | (np.nan_to_num(img) > 1)
        why = [_why(n, i, s) for n, i, s in zip(net, img, stats)]
        return pd.DataFrame({NETWORK_COLUMN: net, IMAGE_COLUMN: img, LUNGS_COLUMN: found, FLAG_COLUMN: ood,
                             WHY_COLUMN: why})

    def rule(self) -> str:
        n, i = self.network, self.image
        return (f"flagged when no lung field is found, or when the slice lies farther from the {n.n_train} training "
                f"slices than the {n.n_val} validation slices allow (the ceil((n + 1)(1 - {self.alpha / 2:g}))-th "
                f"smallest of their distances), as the network sees it (Ledoit-Wolf Mahalanobis distance of the "
                f"fusion-layer input, threshold {n.threshold:.1f}) or in the image's statistics "
                f"({', '.join(STATISTICS)}; threshold {i.threshold:.1f}); false alarms at most "
                f"{self.false_alarm_bound:.3f} on slices like them, "
                f"besides those without a lung field ({self.val_without_lungs} of the validation slices)")


def _why(network: float, image: float, stats: SliceStatistics) -> str:
    if not stats.lungs_found:
        return f"no lung field found ({stats.reason})" if stats.reason else "no lung field found"
    parts = [f"{what} {v:.1f}x the threshold" for what, v in (("to the network", network), ("in the image", image))
             if v > 1]
    return "unlike the training slices " + " and ".join(parts) if parts else ""


def run_vectors(run) -> dict[str, np.ndarray]:
    """{split: the run's cached standardised fusion-layer inputs of that split's slices} (core.runs.run_view)."""
    return {s: v for s, (v, _) in run_rows(run).items()}


def run_rows(run) -> dict[str, tuple[np.ndarray, list[str]]]:
    """{split: (the run's cached fusion-layer inputs of that split's slices, their keys)}."""
    from core.runs.run_view import RunView

    view = RunView(run.path.parent, run.path.name)
    x = view.features("fusion")
    split = view.predictions.set_index("key")["split"]
    splits = np.array([split.get(k, "") for k in view.feature_keys])
    keys = np.array(view.feature_keys)
    return {s: (x[splits == s], list(keys[splits == s])) for s in ("train", "val", "test")}


def run_statistics(run, keys: list[str]) -> list[SliceStatistics]:
    """image_check statistics of the run's own slices named by `keys` (read from its data location)."""
    from core.runs.run_view import RunView

    paths = RunView(run.path.parent, run.path.name).slice_paths
    missing = [k for k in keys if k not in paths]
    if missing:
        raise FileNotFoundError(f"{run.path}: {len(missing)} slices of its features are not in its data location "
                                f"(first {missing[0]})")
    return [measure_file(paths[k]) for k in keys]


def fit_run(run, alpha: float = ALPHA, rows: dict | None = None) -> OodFlag:
    """The flag of a run: fitted on its training slices, thresholds on its validation slices (`rows`: run_rows's,
    when the caller has them)."""
    rows = run_rows(run) if rows is None else rows
    both = run_statistics(run, rows["train"][1] + rows["val"][1])  # one read of the run's slice list
    stats = {"train": both[:len(rows["train"][1])], "val": both[len(rows["train"][1]):]}
    with_lungs = {s: np.stack([m.values for m in stats[s] if m.lungs_found]) for s in stats}
    return OodFlag((rows["train"][0], rows["val"][0]), (with_lungs["train"], with_lungs["val"]), alpha,
                   val_without_lungs=sum(not m.lungs_found for m in stats["val"]))


def describe(row) -> str:
    """A slice's flag in plain words, from its row of OodFlag.assess."""
    if row[FLAG_COLUMN]:
        why = str(row[WHY_COLUMN])
        return (f"{why[0].upper() + why[1:]}: the network has not seen inputs like this; read its probability and map "
                "with care.")
    return (f"Like the training slices (distance {row[NETWORK_COLUMN]:.1f}x the threshold to the network, "
            f"{row[IMAGE_COLUMN]:.1f}x in the image).")
