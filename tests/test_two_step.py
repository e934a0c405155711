"""The two-step decision end to end on the phantoms (the default recipe's `guided_run`): the signs in
predictions.csv, the external sources scored, the decision fitted on the rows that choose, and every reader
(RunView, TrainedRun, predict's JSON, the report files) taking it as the run's decision."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from core.audits import external as ex
from core.config import PipelineConfig
from core.data.errors import DataError
from core.data.imaging import read_slice
from core.inference import TrainedRun
from core.knowledge.decision import FACTOR_COLUMNS, TwoStepDecision
from core.knowledge.selection import RULE
from core.knowledge.signs import SIGNS
from core.pipeline import Pipeline
from core.results.predictions import read_predictions
from core.runs.run_view import RunView
from core.runs.runfolder import RunFolder


def test_the_default_recipe_decides_in_two_steps(guided_run):
    rv = RunView(guided_run.parent, guided_run.name)
    assert rv.pipeline.decision == "two-step"
    assert rv.decision_branch() == TwoStepDecision.name
    decision = TwoStepDecision.of_run(rv.run)
    assert rv.thresholds[TwoStepDecision.name] == decision.operating_point  # chosen across sources, not on val alone
    df = rv.predictions
    for col in (*SIGNS, *FACTOR_COLUMNS):
        assert col in df, col
    d, c = (df[col].astype(float) for col in FACTOR_COLUMNS)
    assert np.allclose(df["p_two-step"], d * c)
    assert (df["lesion_share"].astype(float) - df["p_lesion-share"]).abs().max() < 1e-6  # one lesion share


def test_a_new_tau_changes_exactly_the_probabilities_it_names(guided_run, phantom_root):
    """rescore_tau changes the heads that read the tau crop's vector and the two-step decision when its second step
    reads one of them, and leaves every other probability as it was: the case report re-scores exactly tau_changes()."""
    from core.data.imaging import read_slice
    from core.inference import TrainedRun

    tr = TrainedRun.load(guided_run)
    over_tau = tr.two_step.pattern_branch in ("heatmap", "global+heatmap", "fusion")  # the run's chosen candidate
    decision = (TwoStepDecision.name,) if over_tau else ()
    assert set(tr.tau_changes()) == {"heatmap", "global+heatmap", "fusion", *decision}
    a = tr.analyse(read_slice(next((phantom_root / "covid-ct" / "CT_COVID").glob("*.png"))))
    moved = set()
    for tau in (0.05, 0.5, 0.95):
        live = tr.rescore_tau(a, tau).probs
        assert set(live) == set(a.probs)
        moved |= {b for b in live if abs(live[b] - a.probs[b]) > 1e-7}
    assert moved <= set(tr.tau_changes()) and "heatmap" in moved


def test_the_decision_is_fitted_on_the_rows_that_choose_only(guided_run):
    rows = pd.read_csv(guided_run / ex.ROWS_FILE)
    assert set(rows.source) == {"covid-ct", "semiseg", "covid-ct-md"}
    decision = TwoStepDecision.of_run(RunFolder(guided_run))
    chosen = rows[rows.role == ex.CHOOSES]
    md = chosen[chosen.source == "covid-ct-md"]
    md_used = md[(md.label == 0) | (md.infection_visible == 1)]  # P001 counts on its infected slices only
    assert decision.fitted_on == {"covid-ct": int((chosen.source == "covid-ct").sum()),
                                  "semiseg": int((chosen.source == "semiseg").sum()), "covid-ct-md": len(md_used)}
    # the reporting rows can say anything: refitting on changed report rows gives the same decision
    from core.knowledge.selection import Candidate, select

    changed = rows.copy()
    rep = changed.role == ex.REPORTS
    changed.loc[rep, "label"] = 1 - changed.loc[rep, "label"]
    changed.loc[rep, "lesion_share"] = 0.0
    for b in ("fusion", "global"):
        changed.loc[rep, f"p_{b}"] = 1 - changed.loc[rep, f"p_{b}"]
    normal = ex.against_normal(ex.CHOOSES)
    (a, table_a), (b, table_b) = (select(t.drop(columns=list(ex.DERIVED)), ex.choosing(t), normal=normal)
                                  for t in (changed, rows))
    numbers = lambda d: [d.a_d, d.b_d, d.a_c, d.b_c, *d.w, d.operating_point]
    assert np.allclose(numbers(a), numbers(b)) and a.fitted_on == b.fitted_on and a.pattern_branch == b.pattern_branch
    pd.testing.assert_frame_equal(table_a, table_b)
    # the saved decision is the one its selection table marks chosen, by the rule saved beside it
    saved = TwoStepDecision.saved(RunFolder(guided_run))
    assert saved["selection_rule"] == RULE == json.loads((guided_run / ex.EXTERNAL_FILE).read_text())["selection_rule"]
    stored = pd.DataFrame(saved["selection"])
    chosen = stored[stored.chosen]
    assert len(chosen) == 1 and chosen.name.iloc[0] == Candidate(decision.pattern_branch, tuple(decision.signs)).name
    assert chosen.operating_point.iloc[0] == pytest.approx(decision.operating_point)


def test_external_report_names_each_comparison_with_intervals(guided_run):
    result = json.loads((guided_run / ex.EXTERNAL_FILE).read_text())
    names = set(result["comparisons"])
    assert {"covid-ct test", "semiseg test", "covid-ct-md P002 infected vs normal002",
            "covid-ct-md P002 infected vs cap002"} <= names
    assert result["comparisons"]["covid-ct-md P001 infected vs cap001"]["role"] == ex.CHOOSES
    md = result["comparisons"]["covid-ct-md P002 infected vs normal002"]["branches"]
    assert {"two-step", "fusion", "lesion-share"} <= set(md)
    lo, hi = md["two-step"]["auc_ci"]
    assert lo <= md["two-step"]["auc"] <= hi
    assert set(result["patients"]) == {"P001", "P002", "normal001", "normal002", "cap001", "cap002"}
    assert result["patients"]["cap002"]["role"] == ex.REPORTS


def test_step_one_is_checked_against_the_radiologists_marks(guided_run):
    """external.json's disease_step: p(disease present) against the slices the radiologists marked infected, per
    role, at the decision's operating point, recomputed here from the scored rows."""
    from sklearn.metrics import roc_auc_score

    step = json.loads((guided_run / ex.EXTERNAL_FILE).read_text())["disease_step"]
    cut = TwoStepDecision.of_run(RunFolder(guided_run)).operating_point
    assert step["cut"] == pytest.approx(cut)
    rows = pd.read_csv(guided_run / ex.ROWS_FILE)
    d = rows[FACTOR_COLUMNS[0]]
    for role, patients in ((ex.CHOOSES, ("P001", "normal001", "cap001")),
                           (ex.REPORTS, ("P002", "normal002", "cap002"))):
        (m,) = [m for name, m in step["comparisons"].items() if m["role"] == role and name.startswith("covid-ct-md")]
        here = (rows.source == "covid-ct-md") & rows.group.isin(patients)
        marked = here & (rows.infection_visible == 1)
        assert 0 < marked.sum() < here.sum() and (m["n_pos"], m["n_neg"]) == (marked.sum(), (here & ~marked).sum())
        assert m["auc"] == pytest.approx(roc_auc_score(marked[here], d[here]))
        assert m["sensitivity"] == pytest.approx((d[marked] >= cut).mean())
        assert m["specificity"] == pytest.approx((d[here & ~marked] < cut).mean())
    (m,) = [m for name, m in step["comparisons"].items() if name.startswith("semiseg test")]
    test = (rows.source == "semiseg") & (rows.group == "test")
    assert m["role"] == ex.REPORTS and m["n_neg"] == 0 and "auc" not in m
    assert m["sensitivity"] == pytest.approx((d[test] >= cut).mean())
    assert ex.disease_report(rows.drop(columns=[FACTOR_COLUMNS[0]]), cut) == {}  # no decision fitted: no check


def test_step_one_check_follows_the_marks_not_the_diagnosis():
    """A first factor that is high exactly on the marked slices scores AUC 1 whatever the patients' diagnoses; one
    that is high on the unmarked slices scores 0; the cut decides what counts as let through."""
    rows = pd.DataFrame({"source": "covid-ct-md",
                         "group": ["P002", "P002", "cap002", "cap002", "normal002", "normal002"],
                         "infection_visible": [1, 0, 1, 0, np.nan, np.nan]})
    marked = rows.infection_visible == 1
    good = ex.disease_report(rows.assign(disease_present=np.where(marked, 0.9, 0.1)), 0.5)
    (m,) = good["comparisons"].values()
    assert (m["auc"], m["sensitivity"], m["specificity"], m["n_pos"], m["n_neg"]) == (1.0, 1.0, 1.0, 2, 4)
    (bad,) = ex.disease_report(rows.assign(disease_present=np.where(marked, 0.1, 0.9)), 0.5)["comparisons"].values()
    assert (bad["auc"], bad["sensitivity"], bad["specificity"]) == (0.0, 0.0, 0.0)
    (high,) = ex.disease_report(rows.assign(disease_present=np.where(marked, 0.9, 0.1)), 0.95)["comparisons"].values()
    assert (high["sensitivity"], high["specificity"]) == (0.0, 1.0)


def test_a_live_analysis_gives_the_pipelines_signs_and_factors(guided_run):
    tr = TrainedRun.load(guided_run)
    df = read_predictions(tr.run).set_index("key")
    key = df.index[df.split == "test"][0]
    from core.data.covidct import read_covidct

    path = next(s.path for s in read_covidct(RunFolder(guided_run).config["data_root"]) if s.key == key)
    a = tr.analyse(read_slice(path))
    for name in ("lesion_share", "right_share", "left_share", "bilateral", "lesion_count"):
        assert getattr(a.signs, name) == pytest.approx(float(df.loc[key, name]), abs=0.02), name
    assert a.probs["two-step"] == pytest.approx(a.factors.disease * a.factors.pattern)
    out = a.to_json()
    assert set(out["signs"]) == set(SIGNS) and set(out["two_step"]) == {"disease_present", "looks_like_covid"}


def test_train_external_rescores_nothing_that_did_not_change(guided_run, tmp_path, monkeypatch):
    run = tmp_path / "guided"
    shutil.copytree(guided_run, run)
    monkeypatch.setattr(ex, "score", lambda *a, **k: pytest.fail("scored again though nothing changed"))
    before = json.loads((run / ex.EXTERNAL_FILE).read_text())
    after = ex.run_external(RunFolder(run), RunFolder(run).config["data_root"], fit=False)
    assert after["comparisons"].keys() == before["comparisons"].keys()
    picks = lambda result: [(r["name"], r["chosen"]) for r in result["selection"]]
    assert after["selection_rule"] == before["selection_rule"] and picks(after) == picks(before)


def test_train_external_command_writes_the_report(guided_run, tmp_path, train_cli):
    run = tmp_path / "guided"
    shutil.copytree(guided_run, run)
    # the report gone, the scored rows kept by their key: the command fits and writes again without scoring every
    # slice anew (the scoring itself ran in guided_run's pipeline, its external stage)
    key = json.loads((run / ex.EXTERNAL_FILE).read_text())["rows_key"]
    (run / ex.EXTERNAL_FILE).write_text(json.dumps({"rows_key": key}))
    p = train_cli("external", "--run", run)
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout.strip().splitlines()[-1])["rows"]
    assert any(r["comparison"] == "semiseg test" and r["branch"] == "two-step" for r in rows)
    written = json.loads((run / ex.EXTERNAL_FILE).read_text())
    pairs = lambda rs: {(r["comparison"], r["branch"]) for r in rs}
    assert written["rows_key"] == key and pairs(ex.table_rows(written)) == pairs(rows) and "operating point" in p.stderr


def test_two_step_without_covid_ct_md_fails_before_training(phantom_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(phantom_root, root, ignore=shutil.ignore_patterns("covid-ct-md"))
    run = RunFolder(tmp_path / "r", create=True)
    with pytest.raises(DataError, match="COVID-CT-MD.*guided-heads"):
        Pipeline(run, root, PipelineConfig(recipe="guided-two-step", image_size=64), progress=False)
    assert not (run.path / "global").exists()
