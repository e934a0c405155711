"""`python -m train report`: a Markdown report generated only from run folders."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from core.results.predictions import BASELINES, run_metrics
from core.results.tables import mean_std
from core.runs.runfolder import RunFolder
from core.training.recipes import BEFORE_GUIDANCE, DEFAULT_RECIPE
from core.training.runtime import effective_precision
from tests.conftest import PROJECT_ROOT
from train.__main__ import main

BOOT = 40
COLUMNS = ("accuracy", "f1", "auc", "sensitivity", "specificity")


def report(capsys, *argv) -> tuple[int, str, str]:
    rc = main(["report", *map(str, argv), "--bootstrap", str(BOOT)])
    out, err = capsys.readouterr()
    return rc, out, err


def rows(text: str, first: str) -> list[list[str]]:
    """Cells of every Markdown table row whose first cell is `first`."""
    out = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first:
            out.append(cells)
    return out


def snapshot(root: Path) -> dict:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def second_run(synthetic_run, tmp_path) -> Path:
    """The synthetic run's config and predictions under another name and seed, its probabilities changed
    (so the two runs differ), plus a shortcut table: enough for a report."""
    run = tmp_path / "tiny-s1"
    run.mkdir()
    shutil.copy(synthetic_run / "config.json", run / "config.json")
    folder = RunFolder(run)
    folder.update_config(pipeline={**folder.config["pipeline"], "seed": 1})
    df = pd.read_csv(synthetic_run / "predictions.csv", keep_default_na=False)
    df["p_global"] = (df["p_global"].astype(float) ** 2).round(6)
    df.to_csv(run / "predictions.csv", index=False)
    pd.DataFrame([{"branch": "global", "test_auc": 0.75, "lungs_blanked_auc": 0.5125, "lungs_only_auc": 0.625,
                   "external_sensitivity": 0.25, "pointing": 0.4375}]).to_csv(run / "shortcut.csv", index=False)
    return run


def test_report_holds_the_numbers_core_computes(synthetic_run, capsys):
    before = snapshot(synthetic_run)
    rc, out, err = report(capsys, synthetic_run)
    assert rc == 0, err
    assert out.startswith("# Results")
    assert f"`python -m train report {synthetic_run} --bootstrap {BOOT}`" in out
    assert "synthetic phantoms (not a real-data result)" in out
    assert "recipe `" in out and "seed `" in out and "data `synthetic phantoms" in out
    metrics = run_metrics(RunFolder(synthetic_run), "test", n_boot=BOOT)
    assert metrics
    test_table = out.split("### Test split")[1].split("###")[0]
    for branch, m in metrics.items():
        name = f"{branch} (baseline)" if branch in BASELINES else branch
        (cells,) = rows(test_table, name)
        assert cells[1] == f"{m['accuracy']['value']:.3f}"
        assert cells[2] == f"{m['f1']['value']:.3f}"
        lo, hi = m["auc"]["ci"]
        assert cells[3] == f"{m['auc']['value']:.3f} [{lo:.3f}, {hi:.3f}]"
        assert cells[4] == f"{m['sensitivity']['value']:.3f}"
        assert cells[5] == f"{m['specificity']['value']:.3f}"
        assert cells[6] == f"{m['threshold']:.3f}"
    assert "## Summary across runs" not in out  # one run: no summary
    (global_row,) = rows(out.split("### Training")[1].split("###")[0], "global")
    asked = json.loads((synthetic_run / "global" / "summary.json").read_text())["recipe"]["precision"]
    assert global_row[2] == effective_precision(asked, "cpu")  # what it ran in, not what the recipe asked
    timings = RunFolder(synthetic_run).config["timings"]
    (total,) = rows(out, "total")
    assert total[1] == f"{timings['total'] / 60:.1f}"
    assert snapshot(synthetic_run) == before  # reads only


def test_two_runs_give_a_summary(synthetic_run, second_run, capsys):
    rc, out, err = report(capsys, synthetic_run, second_run)
    assert rc == 0, err
    assert "## Summary across runs" in out and "## tiny-s1" in out
    a = run_metrics(RunFolder(synthetic_run), "test", n_boot=BOOT)
    b = run_metrics(RunFolder(second_run), "test", n_boot=BOOT)
    summary = out.split("## Summary across runs")[1].split("Shortcut audit across runs")[0]
    (cells,) = [r for r in rows(summary, RunFolder(synthetic_run).config["pipeline"]["recipe"]) if "global" in r]
    at = cells.index("global")  # after the group keys (recipe, input, second source)
    assert cells[at + 1:at + 3] == ["2", "0, 1"]
    assert cells[at + 3:at + 8] == [mean_std([a["global"][x]["value"], b["global"][x]["value"]]) for x in COLUMNS]
    assert " ± " in cells[at + 5]
    # the shortcut table of the run that has one, in its section and across runs
    assert "Shortcut audit (`shortcut.csv`" in out and "0.512" in out and "0.438" in out


def test_a_run_with_a_second_source_reports_its_rows(synthetic_run, second_run, capsys):
    """How many second-source rows a run trained on is in its section: runs of one recipe differ in it (the
    segmenter labels them)."""
    rows_ = {"candidates": 1600, "covid": 127, "non_covid": 127}
    RunFolder(second_run).update_config(second_source_rows=rows_)
    rc, out, err = report(capsys, synthetic_run, second_run)
    assert rc == 0, err
    before, after = out.split("## tiny-s1")
    assert "Second source" not in before  # the synthetic run has none
    assert ("Second source (`config.json`): 127 COVID + 127 non-COVID training slices of 1600, labelled by the "
            "run's segmenter.") in after


def test_out_file(synthetic_run, tmp_path, capsys):
    target = tmp_path / "docs" / "results.md"
    assert main(["report", str(synthetic_run), "--bootstrap", "0", "--out", str(target)]) == 0
    out, _ = capsys.readouterr()
    assert out == ""
    text = target.read_text()
    assert f"--out {target}`" in text and "## tiny" in text


def test_other_hospitals_from_external_json(guided_run, synthetic_run, capsys):
    """The run's external.json (`train external`) as a section: which data chose and which report, each
    reporting comparison and branch at its operating point, the COVID-CT-MD patients' calls; none without it."""
    import json

    result = json.loads((guided_run / "external.json").read_text())
    rc, out, err = report(capsys, guided_run)
    assert rc == 0, err
    section = out.split("### Other hospitals (`external.json`, `python -m train external`)")[1].split("\n### ")[0]
    shown, chose = section.split("The data that chose (not a result):")
    # how the two-step decision was chosen: every candidate's score on the data that chose, one marked chosen
    chosen = next(r for r in result["selection"] if r["chosen"])
    assert f"How the two-step decision was chosen on the same data ({result['selection_rule']}):" in chose
    (cells,) = rows(chose, chosen["name"])
    assert cells[1:3] == ["chosen", f"{chosen['score']:.3f}"]
    assert len([r for r in result["selection"] if r["kind"] == "candidate"]) > 1
    assert "Chose the weights and operating points: COVID-CT validation split; COVID-SemiSeg labelled train " \
           "slices (all COVID); COVID-CT-MD patients P001, normal001, cap001." in shown
    assert "Reported here, chose nothing: COVID-CT test split; COVID-SemiSeg labelled test slices (all COVID); " \
           "COVID-CT-MD patients P002, normal002, cap002." in shown
    for name, entry in result["comparisons"].items():
        for branch, m in entry["branches"].items():
            (cells,) = [c for c in rows(shown if entry["role"] == "reports" else chose, name) if c[1] == branch]
            auc = f"{m['auc']:.3f} [{m['auc_ci'][0]:.3f}, {m['auc_ci'][1]:.3f}]" if "auc" in m else ""
            assert cells[2:] == [f"{m['n_pos']} / {m['n_neg']}", auc, f"{m['sensitivity']:.3f}",
                                 f"{m['specificity']:.3f}" if "specificity" in m else "",
                                 f"{result['thresholds'][branch]:.3f}"]
    # step 1 against the radiologists' marks, per role, at the decision's operating point
    step = result["disease_step"]
    assert "How far step 1 can be trusted" in shown and f"operating point {step['cut']:.3f}" in shown
    assert {m["role"] for m in step["comparisons"].values()} == {"reports", "chooses"}
    for name, m in step["comparisons"].items():
        (cells,) = rows(shown if m["role"] == "reports" else chose, name)
        auc = f"{m['auc']:.3f} [{m['auc_ci'][0]:.3f}, {m['auc_ci'][1]:.3f}]" if "auc" in m else ""
        assert cells[1:] == [f"{m['n_pos']} / {m['n_neg']}", auc, f"{m['sensitivity']:.2f}",
                             f"{m['specificity']:.2f}" if "specificity" in m else ""]
    t = result["thresholds"]["two-step"]
    header = next(line for line in shown.splitlines() if line.startswith("| patient |"))
    col = [c.strip() for c in header.strip("|").split("|")].index("two-step")
    for patient, p in result["patients"].items():
        (cells,) = rows(shown if p["role"] == "reports" else chose, patient)
        stat = p["scan_statistic"]["two-step"]
        assert cells[col] == f"{stat:.3f} {'COVID' if stat >= t else 'non-COVID'}"
    assert not (synthetic_run / "external.json").exists()
    rc, out, err = report(capsys, synthetic_run)
    assert rc == 0 and "Other hospitals" not in out


def test_a_folder_that_is_not_a_run(synthetic_run, tmp_path, capsys):
    stray = tmp_path / "not-a-run"
    stray.mkdir()
    rc, out, err = report(capsys, synthetic_run, stray)
    assert rc == 2 and out == ""
    assert err.startswith("error: ") and str(stray) in err


def same_training(a: str, b: str) -> bool:
    """Two recipes that train the same networks (they may decide differently after training)."""
    from dataclasses import replace

    from core.training.recipes import RECIPES

    plain = lambda name: replace(RECIPES[name], name="", decision="fusion")
    return plain(a) == plain(b)


def test_the_committed_reports_are_generated_and_name_their_recipes():
    """docs/reports.md: docs/results.md reports the default recipe, docs/results-recipes.md the recipes it was
    chosen among and docs/results-demo.md a timed `make demo DATA=...` (the default, every stage timed).
    Changing the default without regenerating the reports fails here."""
    docs = PROJECT_ROOT / "docs"
    recipes_of, texts = {}, {}
    for name in ("results.md", "results-recipes.md", "results-demo.md"):
        text = texts[name] = (docs / name).read_text()
        assert text.startswith("# Results\n\nGenerated by `python -m train report "), name
        assert "--out docs/" in text.splitlines()[2], name  # results-recipes.md was written as results.md
        recipes_of[name] = set(re.findall(r"· recipe `([^`]+)` ·", text))
    assert recipes_of["results.md"] == {DEFAULT_RECIPE}
    # the timed demo trained what the default trains (a decision fitted after training may differ: it is timed
    # in results.md's runs)
    (demo_recipe,) = recipes_of["results-demo.md"]
    assert same_training(demo_recipe, DEFAULT_RECIPE), demo_recipe
    demo = texts["results-demo.md"]
    assert "runs/real-demo" in demo.splitlines()[2]  # make demo DATA=...'s run folder
    assert rows(demo, "infnet") and rows(demo, "global") and rows(demo, "total")  # trained its own segmenter, timed
    assert BEFORE_GUIDANCE in recipes_of["results-recipes.md"]
