import numpy as np
import pytest

from core.results.metrics import binary_metrics, wilson


def test_wilson_matches_textbook_value():
    # 8 of 10: Wilson 95% interval (0.4902, 0.9433), e.g. Newcombe 1998.
    lo, hi = wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)


def test_metrics_of_a_known_confusion_matrix():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.2, 0.1, 0.3, 0.6, 0.4])
    m = binary_metrics(y, p, n_boot=200)
    assert m["accuracy"]["value"] == pytest.approx(6 / 8)
    assert m["sensitivity"]["value"] == pytest.approx(3 / 4)
    assert m["specificity"]["value"] == pytest.approx(3 / 4)
    assert m["f1"]["value"] == pytest.approx(0.75)
    assert m["auc"]["value"] == pytest.approx(13 / 16)  # 13 of 16 positive-negative pairs ordered right
    lo, hi = m["auc"]["ci"]
    assert lo <= m["auc"]["value"] <= hi
    assert m["n"] == 8


def test_perfect_classifier_and_bad_shapes():
    y = np.array([0, 0, 1, 1])
    assert binary_metrics(y, np.array([0.1, 0.2, 0.8, 0.9]), n_boot=50)["auc"]["value"] == 1.0
    with pytest.raises(ValueError, match="equal-length"):
        binary_metrics(y, np.array([0.1, 0.2]))
