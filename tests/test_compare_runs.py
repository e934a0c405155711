"""A second run picked in the sidebar (issue 11, item 1): Overview tables side by side with the
difference, the same slice in both runs on the Case view, "decision changed" on the Map and in Margin
review, and slices only one run holds said so."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")


@pytest.fixture(scope="module")
def pair(synthetic_run, module_scratch):
    """runs/a: the synthetic run; runs/b: a copy that lacks three slices and scores others differently."""
    root = module_scratch("compare-runs")
    for name in ("a", "b"):
        shutil.copytree(synthetic_run, root / name)
    pred = pd.read_csv(root / "b" / "predictions.csv", keep_default_na=False)
    dropped = list(pred[pred.split == "train"].key[:3])
    pred = pred[~pred.key.isin(dropped)].copy()
    flip = pred.split == "test"
    pred.loc[flip, "p_fusion"] = 1 - pred.loc[flip, "p_fusion"].astype(float)  # other decisions on test slices
    pred.to_csv(root / "b" / "predictions.csv", index=False)
    mp = pytest.MonkeyPatch()
    mp.setenv("COVID_LAB_RUNS", str(root))
    mp.setenv("COVID_LAB_BOOT", "40")
    yield root, dropped
    mp.undo()


def app(page=None, state=None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in {"run_name": "a", "compare_name": "b", **(state or {})}.items():
        at.session_state[k] = v
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def views(root):
    from core.runs.run_view import RunView

    return RunView(root, "a"), RunView(root, "b")


def test_decisions_and_differences_by_hand():
    from core.results.compare import changed_column, decisions, difference_table

    a = pd.DataFrame({"key": ["s1", "s2", "s3"], "p": [0.9, 0.2, 0.6], "pred": [1, 0, 1]})
    b = pd.DataFrame({"key": ["s2", "s3", "s4"], "p": [0.3, 0.1, 0.7], "pred": [0, 0, 1]})
    d = decisions(a, b).set_index("key")
    assert list(d.index) == ["s1", "s2", "s3", "s4"]
    assert d.in_a.tolist() == [True, True, True, False] and d.in_b.tolist() == [False, True, True, True]
    assert d.changed.tolist() == [False, False, True, False]
    assert changed_column(a, b).tolist() == [None, False, True]
    m = lambda v: {k: {"value": v} for k in ("accuracy", "f1", "auc", "sensitivity", "specificity")}
    t = difference_table({"global": m(0.7), "fusion": m(0.8)}, {"fusion": m(0.75), "heatmap": m(0.5)})
    assert t.branch.tolist() == ["fusion"] and t.auc.iloc[0] == pytest.approx(-0.05)


def test_overview_shows_both_tables_and_their_difference(pair):
    from core.results.metrics import METRICS

    root, dropped = pair
    at = app()
    frames = [d.value for d in at.dataframe]
    diffs = [f for f in frames if list(f.columns) == ["branch", *METRICS] and f.auc.dtype.kind == "f"]
    assert len(diffs) == 2, "one difference table per split (val, test)"
    a, b = views(root)
    ma, mb = a.metrics("test", n_boot=20), b.metrics("test", n_boot=20)
    test_diff = diffs[-1].set_index("branch")  # splits in order val, test
    for branch in ("global", "fusion"):
        assert test_diff.at[branch, "auc"] == pytest.approx(mb[branch]["auc"]["value"] - ma[branch]["auc"]["value"])
    assert test_diff.at["global", "auc"] == pytest.approx(0)  # only fusion was changed in b
    captions = " ".join(c.value for c in at.caption)
    assert "3 only in a and 0 only in b" in captions


def test_case_view_shows_the_slice_in_both_runs(pair):
    root, dropped = pair
    a, b = views(root)
    key = a.predictions[a.predictions.split == "test"].key.iloc[0]
    at = app("views/case.py", {"selected_key": key})
    heads = [s.value for s in at.subheader]
    assert "Beside b" in heads
    chart = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "compare_probs" in c.proto.id)
    shown = {t["name"]: dict(zip(t["y"], t["x"])) for t in chart["data"]}
    row_b = b.predictions.set_index("key").loc[key]
    assert shown["b"]["fusion"] == pytest.approx(float(row_b.p_fusion))
    assert shown["a"]["fusion"] == pytest.approx(1 - float(row_b.p_fusion), abs=1e-6)
    for run in (a, b):  # each run's bars carry that run's own operating points
        assert shown[f"{run.name} · operating point"]["fusion"] == pytest.approx(run.thresholds["fusion"])
    changed = int(a.predictions.set_index("key").at[key, "pred"]) != int(row_b.pred)
    text = " ".join(m.value for m in at.markdown)
    assert ("the decision changed" in text) == changed and ("the same decision" in text) != changed
    # a slice the comparison run does not hold is said so
    at = app("views/case.py", {"selected_key": dropped[0]})
    assert any(f"`{dropped[0]}` is not in b's data" in i.value for i in at.info)


def test_map_and_margin_use_decision_changed(pair):
    from core.results.compare import changed_column
    from dashboard.map_args import CHANGED, map_points

    root, dropped = pair
    a, b = views(root)
    changed = changed_column(a.predictions, b.predictions)
    n_changed = int((changed == True).sum())  # noqa: E712
    assert n_changed > 0
    at = app("views/margin.py")
    at.checkbox(key="margin_changed").check().run()
    assert not at.exception
    shown = f"**{n_changed} {'case' if n_changed == 1 else 'cases'}**"  # how many changed follows the phantom training
    assert any(m.value.startswith(shown) for m in at.markdown)
    at = app("views/map.py")
    at.selectbox(key="map_colour").select(CHANGED).run()
    assert not at.exception
    df = a.predictions.assign(changed=changed)
    keys = list(df.key)
    groups = map_points(df, keys, np.zeros((len(keys), 3)), CHANGED, {})["groups"]
    sizes = {g["name"]: len(g["indices"]) for g in groups}
    assert sizes == {k: v for k, v in {"decision changed": n_changed, "not in the other run": 3,
                                       "same decision": len(keys) - n_changed - 3}.items() if v}
