"""The "Does it look at the disease?" page and the second run picked in the sidebar (issue 11, items 1-2).

Two copies of the session's runs (a slice run and a lungs run), each audited by `train shortcut` on a
few phantom slices; expected numbers come from the audit files, not from the page's helpers."""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
PAGE = "views/disease.py"


@pytest.fixture(scope="module")
def runs(synthetic_run, guided_run, phantom_root, module_scratch):
    from train import shortcut

    root = module_scratch("disease-runs")
    for name, src in (("slice-run", synthetic_run), ("lungs-run", guided_run), ("unaudited", synthetic_run)):
        shutil.copytree(src, root / name)
        for f in ("shortcut.json", "shortcut.csv", "fidelity.csv"):
            (root / name / f).unlink(missing_ok=True)
    for name in ("slice-run", "lungs-run"):
        shortcut.run(argparse.Namespace(run=str(root / name), data_root=str(phantom_root), limit=2, tolerance_px=15.0,
                                        external_split="test", device="cpu", no_progress=True))
    mp = pytest.MonkeyPatch()
    mp.setenv("COVID_LAB_RUNS", str(root))
    mp.setenv("COVID_LAB_BOOT", "40")
    yield root
    mp.undo()


def app(state: dict):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_page_names_the_command_when_a_run_has_no_audit(runs):
    at = app({"run_name": "unaudited"})
    infos = " ".join(i.value for i in at.info)
    assert "has no shortcut audit yet" in infos and f"python -m train shortcut --run {runs / 'unaudited'}" in infos
    assert not at.get("plotly_chart")


def test_page_plots_the_audit_of_both_runs_with_intervals_and_sentences(runs):
    at = app({"run_name": "slice-run", "compare_name": "lungs-run"})
    audit = {n: json.loads((runs / n / "shortcut.json").read_text()) for n in ("slice-run", "lungs-run")}
    specs = charts(at)
    # blanked/only AUC, external sensitivity, pointing (no fidelity table measured), then the "Other hospitals"
    # chart of lungs-run (the default recipe's run: the only one with an external.json)
    assert len(specs) == 4 and "AUC on the data that report" in specs[3]["layout"]["title"]["text"]
    auc_fig, ext_fig, point_fig = specs[:3]
    # one trace per run, each bar with its 95% interval, the numbers the audit wrote
    assert [t["name"] for t in auc_fig["data"]] == ["slice-run", "lungs-run"]
    for trace in auc_fig["data"]:
        res = audit[trace["name"]]
        for what, y, up in zip(trace["x"], trace["y"], trace["error_y"]["array"]):
            branch, cond = what.split(" · ")
            assert y == pytest.approx(res["branches"][branch][cond]["auc"])
            assert y + up == pytest.approx(res["branches"][branch][cond]["auc_ci"][1])
    picked = at.multiselect(key="disease_branches").value
    assert "fusion" in picked and "lesion-share" in picked
    for trace in ext_fig["data"]:
        res = audit[trace["name"]]
        assert dict(zip(trace["x"], trace["y"])) == pytest.approx(
            {b: res["branches"][b]["external"]["sensitivity"] for b in picked})
    maps = {t["name"]: dict(zip(t["x"], t["y"])) for t in point_fig["data"]}
    assert maps["slice-run"] == pytest.approx({m: r["pointing"] for m, r in audit["slice-run"]["localisation"].items()})
    text = " ".join(m.value for m in at.markdown)
    for name in ("slice-run", "lungs-run"):  # one sentence per figure and run
        assert text.count(f"`{name}` · With the lungs blanked") == 1
        assert text.count(f"`{name}` · Of 2 COVID slices") == 1
        assert text.count(f"`{name}` · The peak of **fusion**'s map") == 1
    # a narrower choice of branches redraws the bars
    at.multiselect(key="disease_branches").set_value(["global"]).run()
    assert {w.split(" · ")[0] for w in charts(at)[0]["data"][0]["x"]} == {"global"}


def test_fidelity_table_is_plotted_when_measured(runs, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    shutil.copytree(runs / "slice-run", root / "slice-run")
    pd.DataFrame([{"branch": "global", "method": "eq1", "kind": "cam", "n": 8, "pointing_hit_rate": 0.5,
                   "pointing_ci_low": 0.2, "pointing_ci_high": 0.8},
                  {"branch": "global", "method": "uniform", "kind": "baseline", "n": 8, "pointing_hit_rate": 0.25,
                   "pointing_ci_low": 0.1, "pointing_ci_high": 0.6}]).to_csv(root / "slice-run" / "fidelity.csv", index=False)
    monkeypatch.setenv("COVID_LAB_RUNS", str(root))
    at = app({"run_name": "slice-run"})
    fig = charts(at)[-1]
    assert fig["data"][0]["x"] == ["global · eq1", "global · uniform"] and fig["data"][0]["y"] == [0.5, 0.25]


def frames(blanked=(0.8, 0.7, 0.9), sens=(0.1, 0.05, 0.3), point=(0.7, 0.55, 0.8)):
    auc = pd.DataFrame([{"branch": "fusion", "condition": "lungs-blanked", "auc": blanked[0], "low": blanked[1],
                         "high": blanked[2]}])
    ext = pd.DataFrame([{"branch": "fusion", "sensitivity": sens[0], "low": sens[1], "high": sens[2], "specificity": 0.8,
                         "spec_low": 0.7, "spec_high": 0.9, "mean_p": 0.2, "n": 20}])
    pts = pd.DataFrame([{"map": "fusion", "kind": "branch", "pointing": point[0], "low": point[1], "high": point[2],
                         "energy_share": 0.3, "n": 20},
                        {"map": "uniform", "kind": "baseline", "pointing": 0.36, "low": 0.2, "high": 0.5,
                         "energy_share": 0.15, "n": 20}])
    return auc, ext, pts


def test_sentences_say_what_each_figure_means():
    from dashboard import audit_text

    auc, ext, pts = frames()
    assert "frame around the lungs alone" in audit_text.blanked(auc, "fusion")
    auc, _, _ = frames(blanked=(0.52, 0.44, 0.60))
    assert "close to chance" in audit_text.blanked(auc, "fusion")
    auc, _, _ = frames(blanked=(0.62, 0.55, 0.70))
    assert "between chance and a clear shortcut" in audit_text.blanked(auc, "fusion")
    assert "calls 2 COVID" in audit_text.external(ext, "fusion") and "misses most" in audit_text.external(ext, "fusion")
    _, ext, _ = frames(sens=(0.8, 0.6, 0.9))
    assert "misses most" not in audit_text.external(ext, "fusion")
    # each branch's cut is said where it was chosen: the two-step decision's across sources, not on COVID-CT val
    assert "chosen on COVID-CT's validation split" in audit_text.external(ext, "fusion")
    two_step = audit_text.external(ext.assign(branch="two-step"), "two-step")
    assert "chosen on the data that choose (COVID-CT validation split" in two_step and "P001" in two_step
    assert "more often than chance" in audit_text.pointing(pts, "fusion")
    _, _, pts = frames(point=(0.4, 0.25, 0.6))
    assert "no better than chance" in audit_text.pointing(pts, "fusion")
    assert "no map" in audit_text.pointing(pts, "heatmap")
    # the soft-tissue-window slices left out: said only when the audit left some out
    assert audit_text.window(auc, "fusion") == ""
    whole = {"branch": "fusion", "condition": "intact", "auc": 0.83, "low": 0.77, "high": 0.88}
    readable = {"branch": "fusion", "condition": "lungs-readable", "auc": 0.81, "low": 0.74, "high": 0.86,
                "left_out": 11}
    text = audit_text.window(pd.DataFrame([whole, readable]), "fusion")
    assert text.startswith("Without the 11 test slices shown in a soft-tissue window")
    assert "AUC 0.81 (95% CI 0.74–0.86)" in text and text.endswith("gave it 0.02 of its test AUC.")


def test_lungs_run_outlines_its_lung_field_and_a_slice_run_has_none(runs):
    from core.pictures.images import LUNG_COLOUR, outline
    from core.runs.run_view import RunView

    lungs = RunView(runs, "lungs-run")
    key = lungs.predictions.key.iloc[0]
    field = lungs.lung_field(key, 64)
    assert field.dtype == bool and field.shape == (64, 64) and 0 < field.mean() < 1
    drawn = np.asarray(outline(lungs.image(key, 64), field))
    on_edge = (drawn == LUNG_COLOUR).all(-1)
    assert on_edge.any() and not on_edge[~field].any()  # the outline lies on the field's inner border
    assert RunView(runs, "slice-run").lung_field(key, 64) is None


def test_the_auc_figure_has_the_lungs_readable_bar_only_when_slices_were_left_out():
    from core.audits.shortcut import figure_frames

    def auc(v):
        return {"auc": v, "auc_ci": [v - 0.05, v + 0.05]}

    branch = {"intact": auc(0.83), "lungs-blanked": auc(0.5), "lungs-only": auc(0.83), "lungs-readable": auc(0.81)}
    res = {"branches": {"fusion": branch}, "soft_tissue_window": ["CT_NonCOVID/1.png", "CT_NonCOVID/2.png"]}
    rows = figure_frames(res)["auc"]
    assert list(rows.condition) == ["intact", "lungs-blanked", "lungs-only", "lungs-readable"]
    assert rows.left_out.iloc[-1] == 2 and rows.auc.iloc[-1] == 0.81
    assert "lungs-readable" not in set(figure_frames({**res, "soft_tissue_window": []})["auc"].condition)
