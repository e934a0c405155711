"""A prediction set for every slice: class-conditional (Mondrian) split conformal prediction, by crepes.

Calibrated on the validation split's probabilities of one branch (predictions.csv). The non-conformity of class
c for a slice with P(COVID) = p is 1 - P(c): 1 - p for COVID, p for non-COVID. Class c enters a slice's set when
its p-value among the calibration slices *of class c* is at least 1 - level (crepes' rule; p-values not
smoothed, so a slice always gets the same set). On exchangeable data each class then keeps coverage >= level
however rare it is (Vovk et al. 2005), which one pooled calibration does not promise the rarer class.

For one probability that is two cut-offs (`cutoffs`): COVID is in the set when p >= covid_from, non-COVID
when p <= non_covid_to. A set is {COVID}, {non-COVID}, both (the network cannot tell at this level) or
empty (the slice scores like neither class's calibration slices).
"""
from __future__ import annotations

import numpy as np

from core.results.predictions import read_predictions
from core.runs.runfolder import RunError, RunFolder

CLASSES = ("non-COVID", "COVID")  # label 0, label 1
LEVEL = 0.90


def _check(labels, probs) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(int)
    p = np.asarray(probs, np.float64)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"labels {y.shape} and probabilities {p.shape} must be two vectors of one length")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (non-COVID) or 1 (COVID)")
    if not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
        raise ValueError("probabilities must be finite and within [0, 1]")
    return y, p


def _scores(p: np.ndarray) -> np.ndarray:
    """(n, 2) non-conformity of each class: [p, 1 - p]."""
    return np.stack([p, 1 - p], 1)


class PredictionSets:
    """Fitted on (labels, P(COVID)) of calibration slices; maps any probability to its set at `level`."""

    def __init__(self, labels, probs, level: float = LEVEL):
        from crepes import ConformalClassifier

        if not 0 < level < 1:
            raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
        y, p = _check(labels, probs)
        missing = [CLASSES[c] for c in (0, 1) if not (y == c).any()]
        if missing:
            raise ValueError(f"no calibration slice of class {', '.join(missing)}: each class needs its own")
        self.level, self.labels, self.probs = level, y, p
        self.counts = {CLASSES[c]: int((y == c).sum()) for c in (0, 1)}
        self._cc = ConformalClassifier().fit(_scores(p)[np.arange(len(y)), y], bins=y)

    def p_values(self, probs) -> np.ndarray:
        """(n, 2) p-value of each class (crepes, class-conditional, not smoothed)."""
        p = np.atleast_1d(np.asarray(probs, np.float64))
        _check(np.zeros(len(p), int), p)
        a = _scores(p)
        return np.stack([self._cc.predict_p(a, bins=np.full(len(p), c), smoothing=False)[:, c] for c in (0, 1)], 1)

    def sets(self, probs) -> np.ndarray:
        """(n, 2) bool: [non-COVID in the set, COVID in the set]."""
        return self.p_values(probs) >= 1 - self.level

    def set_of(self, prob: float) -> tuple[str, ...]:
        """One slice's set, as class names (non-COVID first)."""
        row = self.sets([prob])[0]
        return tuple(CLASSES[c] for c in (0, 1) if row[c])

    @property
    def always_in(self) -> list[str]:
        """Classes too few in the calibration for the level: with n slices the smallest p-value is 1 / (n + 1), so
        when that is at least 1 - level every set holds the class."""
        return [c for c, n in self.counts.items() if 1 / (n + 1) >= 1 - self.level]

    @property
    def cutoffs(self) -> dict[str, float]:
        """COVID is in a set when p >= covid_from, non-COVID when p <= non_covid_to (the same sets as `sets`)."""
        out = {}
        for c, key in ((1, "covid_from"), (0, "non_covid_to")):
            cal = np.sort(self.probs[self.labels == c])
            n = len(cal)
            # the fewest calibration scores at least as odd as the slice's that keep its p-value >= 1 - level
            need = next(m for m in range(n + 1) if (m + 1) / (n + 1) >= 1 - self.level)
            if c == 1:
                out[key] = 0.0 if need == 0 else float(cal[need - 1])
            else:
                out[key] = 1.0 if need == 0 else float(cal[::-1][need - 1])
        return out

    def report(self, labels, probs) -> dict:
        y, p = _check(labels, probs)
        return coverage(self.sets(p), y)


def coverage(sets: np.ndarray, labels) -> dict:
    """Empirical coverage per class (share of its slices whose set holds their class), and the shares of
    two-class and empty sets, on a labelled set."""
    s = np.asarray(sets, bool)
    y = np.asarray(labels).astype(int)
    hit = s[np.arange(len(y)), y]
    per = {CLASSES[c]: {"n": int((y == c).sum()), "coverage": float(hit[y == c].mean()) if (y == c).any() else None}
           for c in (0, 1)}
    size = s.sum(1)
    return {"n": len(y), "per_class": per, "two_class_share": float((size == 2).mean()),
            "empty_share": float((size == 0).mean()), "coverage": float(hit.mean())}


def describe(names: tuple[str, ...], level: float) -> str:
    """A set in plain words."""
    pct = f"{level:.0%}"
    if len(names) == 2:
        return f"COVID or non-COVID at {pct}: the network cannot tell these apart on this slice at that level."
    if not names:
        return f"Neither class at {pct}: the slice scores like neither class's validation slices."
    return f"{names[0]} at {pct}: the set holds one class."


def split_probs(run: RunFolder, branch: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels, P(COVID)) of one branch on one split of a run's predictions.csv."""
    df = read_predictions(run)
    col = f"p_{branch}"
    part = df[df["split"] == split]
    if col not in df or part.empty or (part[col] == "").any():
        raise RunError(f"{run.predictions_csv}: no {branch} probabilities for the {split} split")
    return part["label"].astype(int).to_numpy(), part[col].astype(float).to_numpy()


def fit_run(run: RunFolder, branch: str, level: float = LEVEL) -> PredictionSets:
    """A branch's prediction sets, calibrated on the run's validation split."""
    return PredictionSets(*split_probs(run, branch, "val"), level=level)


def run_sets(run: RunFolder, branch: str, level: float = LEVEL, report_on: str = "test") -> dict:
    """Calibrate a branch on the validation split, report coverage and set sizes on `report_on`."""
    sets = fit_run(run, branch, level)
    y, p = split_probs(run, branch, report_on)
    return {"branch": branch, "level": level, "calibration": {"split": "val", **sets.counts},
            "cutoffs": sets.cutoffs, "split": report_on, **sets.report(y, p)}
