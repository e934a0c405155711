"""core.results.evaluation (the Overview's ROC, confusion and calibration numbers) without Streamlit. Expected values
are worked by hand or come from sklearn's own roc_curve / confusion_matrix / calibration_curve."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from core.results.evaluation import (
    CALIBRATION_COLUMNS,
    calibration,
    confusion,
    confusion_counts,
    reliability,
    roc_curves,
)


def frame(seed: int = 0, n: int = 200) -> pd.DataFrame:
    """A predictions frame as RunView.predictions has it: split, label, pred and p_<branch> columns."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p_g = np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1)
    p_f = np.clip(0.5 * y + 0.5 * rng.random(n), 0, 1)
    return pd.DataFrame({"key": [f"s{i}" for i in range(n)], "split": rng.choice(["val", "test"], n), "label": y,
                         "p_global": p_g, "p_fusion": p_f, "pred": (p_f >= 0.6).astype(int)})


def test_roc_of_a_hand_worked_split():
    # The other split's rows must not count: they would turn the AUC to 0.5.
    df = pd.DataFrame({"split": ["test"] * 4 + ["val"] * 2, "label": [0, 0, 1, 1, 0, 1],
                       "p_fusion": [0.1, 0.4, 0.35, 0.8, 0.9, 0.1]})
    c = roc_curves(df, "test", ["fusion"])["fusion"]
    assert c["auc"] == pytest.approx(0.75)  # 3 of the 4 positive-negative pairs ordered right
    assert c["fpr"][-1] == 1.0 and c["tpr"][-1] == 1.0
    assert (c["fpr"][0], c["tpr"][0]) == (0.0, 0.0)


def test_roc_matches_sklearn_per_branch():
    df = frame()
    part = df[df.split == "val"]
    curves = roc_curves(df, "val", ["global", "fusion"])
    assert list(curves) == ["global", "fusion"]
    for b in ("global", "fusion"):
        fpr, tpr, _ = roc_curve(part.label, part[f"p_{b}"])
        assert curves[b]["fpr"] == pytest.approx(fpr.tolist()) and curves[b]["tpr"] == pytest.approx(tpr.tolist())
        assert curves[b]["auc"] == pytest.approx(roc_auc_score(part.label, part[f"p_{b}"]))


def test_roc_of_a_single_class_split_is_empty():
    df = pd.DataFrame({"split": ["test"] * 3, "label": [1, 1, 1], "p_fusion": [0.2, 0.5, 0.9]})
    assert roc_curves(df, "test", ["fusion"]) == {}


def test_confusion_of_a_hand_worked_split():
    df = pd.DataFrame({"split": ["test"] * 5 + ["val"], "label": [0, 0, 1, 1, 1, 1], "pred": [0, 1, 1, 0, 1, 0]})
    # truth 0: one called 0, one called 1; truth 1: one called 0, two called 1 (the val row is left out)
    assert confusion(df, "test").tolist() == [[1, 1], [1, 2]]
    # a split of one class still gives the full 2 x 2
    assert confusion(df, "val").tolist() == [[0, 0], [1, 0]]
    assert confusion_counts([], []).tolist() == [[0, 0], [0, 0]]


def test_confusion_matches_sklearn():
    df = frame(1)
    part = df[df.split == "test"]
    assert confusion(df, "test").tolist() == confusion_matrix(part.label, part.pred, labels=[0, 1]).tolist()


def test_reliability_of_hand_worked_bins():
    p = [0.05, 0.15, 0.12, 0.95, 1.0, 0.5]
    y = [0, 1, 0, 1, 1, 0]
    r = reliability(y, p, 10)
    assert list(r.columns) == ["bin", "mean_p", "observed", "n"]
    assert r.bin.tolist() == [0, 1, 5, 9]  # empty bins are left out; 0.5 opens bin 5; 1.0 is in the last bin
    assert r.n.tolist() == [1, 2, 1, 2]
    assert r.mean_p.tolist() == pytest.approx([0.05, 0.135, 0.5, 0.975])
    assert r.observed.tolist() == pytest.approx([0.0, 0.5, 0.0, 1.0])


@pytest.mark.parametrize("n_bins", [5, 10])
def test_calibration_matches_sklearn(n_bins):
    df = frame(2)
    part = df[df.split == "test"]
    cal = calibration(df, "test", ["global", "fusion"], n_bins)
    assert list(cal.columns) == CALIBRATION_COLUMNS
    assert list(pd.unique(cal.branch)) == ["global", "fusion"]
    for b in ("global", "fusion"):
        observed, mean_p = calibration_curve(part.label, part[f"p_{b}"], n_bins=n_bins, strategy="uniform")
        g = cal[cal.branch == b]
        assert g.mean_p.tolist() == pytest.approx(mean_p.tolist())
        assert g.observed.tolist() == pytest.approx(observed.tolist())
        counts = np.histogram(part[f"p_{b}"], bins=np.linspace(0, 1, n_bins + 1))[0]
        assert g.n.tolist() == [int(c) for c in counts if c]
        assert g.n.sum() == len(part)


def test_calibration_of_an_empty_split():
    cal = calibration(frame(), "train", ["global", "fusion"])
    assert cal.empty and list(cal.columns) == CALIBRATION_COLUMNS
