"""Branch-information probe (held-out stacking on the validation split): core and CLI."""
import json

import numpy as np
import pandas as pd
import pytest

from core.audits.branch_probe import PROBE_FILE, SETS, probe


def _vectors(h_informative: bool, n=600, seed=0):
    """g carries a weak signal; h a strong one independent of g's noise, or none at all."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    signal = (2 * y - 1)[:, None]
    vec = {"g": 0.3 * signal + rng.normal(size=(n, 8)),
           "h": (1.5 * signal if h_informative else 0) + rng.normal(size=(n, 8)),
           "r": rng.normal(size=(n, 4)), "l": rng.normal(size=(n, 4)), "present": rng.integers(0, 2, (n, 2))}
    splits = np.array(["train"] * 200 + ["val"] * 200 + ["test"] * 200)
    return vec, y, splits


def test_an_informative_branch_shows_up_and_a_useless_one_does_not():
    vec, y, splits = _vectors(h_informative=True)
    t = probe(vec, y, splits).set_index("branch")
    assert list(t.index) == list(SETS)
    assert t.loc["global+heatmap", "test_auc"] > t.loc["global", "test_auc"] + 0.1
    assert t.loc["fusion", "test_auc"] > t.loc["global", "test_auc"] + 0.1
    assert t.loc["global+infected", "test_auc"] < t.loc["global", "test_auc"] + 0.05  # r, l are noise
    vec, y, splits = _vectors(h_informative=False)
    t = probe(vec, y, splits).set_index("branch")
    assert t.loc["global+heatmap", "test_auc"] < t.loc["global", "test_auc"] + 0.05
    assert (t.C > 0).all() and t.test_accuracy.between(0, 1).all()


def test_probe_refuses_what_it_cannot_measure():
    vec, y, splits = _vectors(True)
    with pytest.raises(ValueError, match="needs"):
        probe({k: v for k, v in vec.items() if k != "h"}, y, splits)
    tiny = splits.copy()
    tiny[(splits == "val") & (y == 1)] = "train"  # no positive slice left in val
    with pytest.raises(ValueError, match="each class in val"):
        probe(vec, y, tiny)


def test_cli_writes_the_table_into_the_run(synthetic_run, tmp_path, train_cli):
    out = train_cli("probe", "--run", synthetic_run, "--folds", "4")
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads(out.stdout)["rows"]
    assert [r["branch"] for r in rows] == list(SETS)
    table = pd.read_csv(synthetic_run / PROBE_FILE)
    assert table.trained_test_auc.notna().all() and table.test_auc.between(0, 1).all()
    empty = tmp_path / "nofusion"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    bad = train_cli("probe", "--run", empty)
    assert bad.returncode == 2 and "no fusion feature cache" in bad.stderr


def test_a_cache_too_small_for_the_folds_is_one_line(synthetic_run, tmp_path):
    """The command checks --folds against predictions.csv; a fusion cache holding fewer validation slices than the
    folds need is said naming the run (a RunError: one line), not a traceback."""
    from core.audits.branch_probe import write_probe
    from core.runs.runfolder import RunError, RunFolder

    with pytest.raises(RunError, match=f"{synthetic_run}: probe needs at least 1000 slices of each class in val"):
        write_probe(RunFolder(synthetic_run), folds=1000)
