"""Issue 26 on the pages: the two steps of the decision and the radiological signs (Case, New slice, the case
report), and "Other hospitals" from external.json on the "Does it look at the disease?" page.

Copies of the session's runs: `two-step` (the default recipe's run: its two-step decision fitted, external.json
written by its pipeline), `unscored` (the same without external.json) and `plain` (the recipe before guidance: no
two-step decision). Expected numbers come from the run's files (predictions.csv, two-step/decision.json,
external.json), not from the pages' helpers."""
from __future__ import annotations

import json
import re
import shutil

import pytest

from core.knowledge.decision import FACTOR_COLUMNS, Factors, TwoStepDecision
from core.knowledge.signs import NAMES
from core.results.external_tables import DISEASE_COLUMNS
from core.results.predictions import read_predictions
from core.runs.run_view import RunView
from core.runs.runfolder import RunFolder
from tests.test_dashboard import _png_of, no_exception

TWO_STEP_HEAD = "**Two steps: is there disease, and does it look like COVID-19?**"


@pytest.fixture(scope="module")
def runs(guided_run, synthetic_run, module_scratch):
    root = module_scratch("two-step-runs")
    for name, src in (("two-step", guided_run), ("unscored", guided_run), ("plain", synthetic_run)):
        shutil.copytree(src, root / name)
    for f in ("external.json", "external.csv"):
        (root / "unscored" / f).unlink(missing_ok=True)
    assert (root / "two-step" / "external.json").is_file()
    assert TwoStepDecision.of_run(RunFolder(root / "two-step")) is not None
    assert TwoStepDecision.of_run(RunFolder(root / "plain")) is None
    mp = pytest.MonkeyPatch()
    mp.setenv("COVID_LAB_RUNS", str(root))
    mp.setenv("COVID_LAB_BOOT", "40")
    yield root
    mp.undo()


def app(page: str, state: dict):
    from streamlit.testing.v1 import AppTest

    from tests.test_dashboard import APP

    at = AppTest.from_file(APP, default_timeout=240)
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    at.switch_page(page).run()
    no_exception(at)
    return at


def markdown(at) -> list[str]:
    return [m.value for m in at.markdown]


def step_one_record(at, run) -> None:
    """The page shows step 1's record on the patients that chose nothing, as external.json holds it."""
    step = json.loads((run / "external.json").read_text())["disease_step"]
    (m,) = [m for m in step["comparisons"].values() if m["role"] == "reports" and m["n_neg"]]
    (record,) = [c.value for c in at.caption if c.value.startswith("Step 1 on patients that chose nothing")]
    found = re.search(r"it let ([\d.]+)% of the slices the radiologists marked infected \((\d+)\) through to step 2, "
                      r"and alone cleared ([\d.]+)% of the others \((\d+)\): below the operating point ([\d.]+) ",
                      record)
    sens, n_pos, spec, n_neg, cut = found.groups()
    assert (int(n_pos), int(n_neg)) == (m["n_pos"], m["n_neg"]) and cut == f"{step['cut']:.3f}"
    assert (float(sens), float(spec)) == pytest.approx((100 * m["sensitivity"], 100 * m["specificity"]), abs=0.51)


def signs_frame(at):
    return next(d.value for d in at.dataframe if list(d.value.columns) == ["sign", "value"])


def product_line(at) -> tuple[float, float, float]:
    """(disease, pattern, p) from the line 'p(COVID) = d × c = p'."""
    (line,) = [t for t in markdown(at) if t.startswith("**p(COVID) = ")]
    d, c, p = map(float, re.match(r"\*\*p\(COVID\) = ([\d.]+) × ([\d.]+) = ([\d.]+)\*\*", line).groups())
    return d, c, p


# ---- the two steps and the signs on one slice ------------------------------------------------------------------
def test_case_shows_both_steps_and_the_signs_from_the_stored_row(runs):
    folder = RunFolder(runs / "two-step")
    df = read_predictions(folder).set_index("key")
    decision = TwoStepDecision.of_run(folder)
    key = df[df.split == "test"].index[0]
    row = df.loc[key]
    at = app("views/case.py", {"run_name": "two-step", "selected_key": key})
    lines = markdown(at)
    assert TWO_STEP_HEAD in lines
    d, c = (float(row[col]) for col in FACTOR_COLUMNS)
    p, t = float(row["p_two-step"]), decision.operating_point
    assert any(x.startswith(f"1 · **disease present** p = {d:.2f}") for x in lines)
    step2 = next(x for x in lines if x.startswith("2 · **looks like COVID-19**"))
    assert f"p = {c:.2f}" in step2 and f"{decision.pattern_branch} {float(row[f'p_{decision.pattern_branch}']):.2f}" in step2
    assert product_line(at) == pytest.approx((d, c, p), abs=5e-3)
    call = "COVID" if p >= t else "non-COVID"
    assert any(f"→ **{call}** (operating point {t:.3f})" in x for x in lines)
    lower = 1 if d <= c else 2
    assert any(x.startswith(f"The lower factor is step {lower}") for x in lines)
    signs = signs_frame(at)
    assert list(signs.sign) == list(NAMES.values())
    shown = dict(zip(signs.sign, signs.value))
    assert shown[NAMES["lesion_share"]] == f"{100 * float(row['lesion_share']):.1f}%"
    assert shown[NAMES["lesion_count"]] == str(int(float(row["lesion_count"])))
    assert shown[NAMES["bilateral"]] == ("yes" if float(row["bilateral"]) else "no")
    step_one_record(at, runs / "two-step")


def test_margin_review_says_where_the_decisions_cut_was_chosen(runs):
    at = app("views/margin.py", {"run_name": "two-step"})
    no_exception(at)
    (caption,) = [c.value for c in at.caption if c.value.startswith("Margin = |p - t|")]
    assert "decision branch (two-step; t: its operating point, chosen on the data that choose" in caption


def test_case_without_the_two_step_decision_shows_the_signs_only(runs):
    rv = RunView(runs, "plain")
    key = rv.predictions.key.iloc[0]
    at = app("views/case.py", {"run_name": "plain", "selected_key": key})
    assert TWO_STEP_HEAD not in markdown(at)
    assert not any(t.startswith("**p(COVID) = ") for t in markdown(at))
    row = rv.predictions.set_index("key").loc[key]
    signs = signs_frame(at)
    assert dict(zip(signs.sign, signs.value))[NAMES["lesion_share"]] == f"{100 * float(row['lesion_share']):.1f}%"


def test_new_slice_shows_the_live_two_steps_and_signs(runs):
    rv = RunView(runs, "two-step")
    key = rv.predictions.key.iloc[0]
    at = app("views/new_slice.py", {"run_name": "two-step"})
    at.file_uploader(key="upload").set_value(("slice.png", _png_of(rv, key), "image/png")).run()
    no_exception(at)
    assert TWO_STEP_HEAD in markdown(at)
    probs = next(d.value for d in at.dataframe if list(d.value.columns) == ["branch", "p(COVID)"])
    p_live = dict(zip(probs.branch, probs["p(COVID)"]))["two-step"]
    d, c, p = product_line(at)
    assert p == pytest.approx(p_live, abs=5e-4) and d * c == pytest.approx(p_live, abs=1e-2)
    head = next(t for t in markdown(at) if t.startswith("**two-step**: p(COVID) ="))
    assert "chosen on the data that choose" in head
    assert list(signs_frame(at).sign) == list(NAMES.values())
    step_one_record(at, runs / "two-step")


def test_new_slice_without_lungs_reads_no_disease_and_says_why(runs):
    """A slice with a body and no lung (a scan's neck or abdomen): no lung field, every sign 0, step 1 at the value
    of no lesion, and the page says so (SIGNS_VERSION 2; before, the whole slice's marks counted as lesion)."""
    import io

    import numpy as np
    from PIL import Image

    from core.knowledge.decision import EPS, sigmoid
    from dashboard.ui import NO_LUNG_FIELD, NO_LUNGS_CALL

    yy, xx = np.mgrid[0:96, 0:96] / 96
    body = ((yy - 0.5) / 0.35) ** 2 + ((xx - 0.5) / 0.45) ** 2 <= 1
    img = np.where(body, 150, 0).astype(np.uint8)
    img[body & (((yy - 0.55) / 0.08) ** 2 + ((xx - 0.5) / 0.06) ** 2 <= 1)] = 250  # a spine, no dark region
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    at = app("views/new_slice.py", {"run_name": "two-step"})
    at.file_uploader(key="upload").set_value(("abdomen.png", buf.getvalue(), "image/png")).run()
    no_exception(at)
    assert any(w.value.startswith(NO_LUNG_FIELD + " Step 1 of the two-step decision reads no disease.")
               for w in at.warning)
    (headline,) = [m.value for m in at.markdown if m.value.startswith("**two-step**: p(COVID) = ")]
    assert headline.endswith(f" · {NO_LUNGS_CALL}")  # the call itself says it reads no lung, not only a warning
    signs = dict(zip(signs_frame(at).sign, signs_frame(at).value))
    assert signs[NAMES["lesion_share"]] == "0.0%"
    decision = TwoStepDecision.of_run(RunFolder(runs / "two-step"))
    d, _, _ = product_line(at)
    assert d == pytest.approx(float(sigmoid(decision.a_d * np.log(EPS) + decision.b_d)), abs=5e-3)


def test_two_step_words():
    from dashboard.knowledge_ui import two_step_lines

    decision = TwoStepDecision(a_d=1.0, b_d=4.0, a_c=0.8, w=[0.5, 0.0, 0.2, 0.1], operating_point=0.4)
    signs = {"lesion_share": 0.12, "peripheral_share": 0.8, "bilateral": 1.0, "consolidation_share": 0.25,
             "lesion_count": 3}
    lines = two_step_lines(decision, Factors(0.93, 0.41), signs, 0.55)
    assert lines[0] == "1 · **disease present** p = 0.93 (lesion share 12% of the lungs)"
    assert lines[1] == ("2 · **looks like COVID-19** p = 0.41 (fusion 0.55, peripheral 80%, bilateral, ground glass "
                        "75%, 3 lesion pieces); the fit gives no weight to bilateral")
    assert lines[2] == "**p(COVID) = 0.93 × 0.41 = 0.381** → **non-COVID** (operating point 0.400)"
    assert lines[3].startswith("The lower factor is step 2, *looks like COVID-19*")
    lines = two_step_lines(TwoStepDecision(a_d=0.0, operating_point=0.1), Factors(0.2, 0.9),
                           {**signs, "lesion_share": 0.004, "bilateral": 0.0}, 0.9)
    assert "lesion share 0.4% of the lungs" in lines[0] and "no weight" in lines[0]
    assert "one lung" in lines[1] and "→ **COVID**" in lines[2] and lines[3].startswith("The lower factor is step 1")
    assert "rules COVID-19 out" not in lines[0]  # 0.2 passes the operating point 0.1: step 2 still decides
    lines = two_step_lines(TwoStepDecision(operating_point=0.3), Factors(0.2, 0.99), signs, 0.9)
    assert lines[0].endswith("; under the operating point, so step 1 alone rules COVID-19 out")
    assert "→ **non-COVID**" in lines[2]


def test_case_report_carries_the_signs(runs, monkeypatch):
    from streamlit.delta_generator import DeltaGenerator

    from dashboard import data_browser, report_ui

    seen, real_button, real_report = {}, DeltaGenerator.download_button, report_ui.case_report

    def button(self, label, data, *a, **kw):
        seen[label] = data
        return real_button(self, label, data, *a, **kw)

    def report(*a, **kw):
        seen["signs"] = kw.get("signs")
        return real_report(*a, **kw)

    monkeypatch.setattr(DeltaGenerator, "download_button", button)
    monkeypatch.setattr(report_ui, "case_report", report)
    rv = RunView(runs, "two-step")
    key = rv.predictions.key.iloc[0]
    app("views/case.py", {"run_name": "two-step", "selected_key": key})
    seen["Download case report (PNG)"]()  # deferred: composed when clicked
    row = read_predictions(rv.run).set_index("key").loc[key]
    assert seen["signs"] == data_browser.signs_line(data_browser.row_signs(row))
    assert seen["signs"].startswith(f"{NAMES['lesion_share']} {100 * float(row['lesion_share']):.1f}%")


# ---- other hospitals ------------------------------------------------------------------------------------------
def test_disease_page_shows_other_hospitals_from_external_json(runs):
    result = json.loads((runs / "two-step" / "external.json").read_text())
    at = app("views/disease.py", {"run_name": "two-step"})
    assert any(s.value.startswith("6 · Other hospitals") for s in at.subheader)
    text = " ".join(markdown(at))
    assert "**The data that chose** the weights and operating points: COVID-CT validation split; COVID-SemiSeg " \
           "labelled train slices (all COVID); COVID-CT-MD patients P001, normal001, cap001." in text
    assert "**The data reported here** chose nothing: COVID-CT test split; COVID-SemiSeg labelled test slices " \
           "(all COVID); COVID-CT-MD patients P002, normal002, cap002." in text
    reporting = [n for n, e in result["comparisons"].items() if e["role"] == "reports"]
    assert "covid-ct-md P002 infected vs normal002" in reporting and "covid-ct-md P002 infected vs cap002" in reporting
    # the chart: the decision beside lesion-share, each bar the AUC external.json holds, with its interval
    fig = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
               if "AUC on the data that report" in json.dumps(json.loads(c.proto.spec)["layout"].get("title")))
    assert [t["name"] for t in fig["data"]] == ["two-step", "lesion-share"]
    for trace in fig["data"]:
        want = {n: result["comparisons"][n]["branches"][trace["name"]] for n in reporting
                if "auc" in result["comparisons"][n]["branches"][trace["name"]]}
        assert dict(zip(trace["x"], trace["y"])) == pytest.approx({n: m["auc"] for n, m in want.items()})
        highs = [y + up for y, up in zip(trace["y"], trace["error_y"]["array"])]
        assert highs == pytest.approx([want[n]["auc_ci"][1] for n in trace["x"]])
    # every branch at its operating point on the data that report; the data that chose in the expander
    tables = [d.value for d in at.dataframe if "AUC [95% CI]" in d.value.columns]
    shown, chose = tables[0], tables[1]
    (picked,) = [d.value for d in at.dataframe if "score (mean AUC)" in d.value.columns]  # how the decision was chosen
    assert list(picked[picked[""] == "chosen"].decision) == [r["name"] for r in result["selection"] if r["chosen"]]
    assert set(shown.comparison) == set(reporting)
    for r in shown.itertuples():
        m = result["comparisons"][r.comparison]["branches"][r.branch]
        assert r.sensitivity == f"{m['sensitivity']:.3f}"
        assert r[4] == (f"{m['auc']:.3f} [{m['auc_ci'][0]:.3f}, {m['auc_ci'][1]:.3f}]" if "auc" in m else "")
        assert r[7] == f"{result['thresholds'][r.branch]:.3f}"
    assert {"lesion-share", "two-step"} <= set(shown.branch)
    assert set(chose.comparison) == {n for n, e in result["comparisons"].items() if e["role"] == "chooses"}
    (expander,) = [e for e in at.expander if e.label.startswith("The data that chose")]
    assert "P001, normal001, cap001" in expander.label
    # per patient: the scan-level score and the call at the operating point
    patients = next(d.value for d in at.dataframe if "patient" in d.value.columns)
    assert set(patients.patient) == {"P002", "normal002", "cap002"}
    for r in patients.to_dict("records"):
        stat = result["patients"][r["patient"]]["scan_statistic"]["two-step"]
        t = result["thresholds"]["two-step"]
        assert r["two-step"] == f"{stat:.3f} {'COVID' if stat >= t else 'non-COVID'}"
    # step 1 against the radiologists' marks: the data that report in front, the data that chose in the expander
    step = result["disease_step"]
    assert any(t.startswith("**How far step 1 can be trusted") and f"operating point {step['cut']:.3f}" in t
               for t in markdown(at))
    shown, chose = [d.value for d in at.dataframe if list(d.value.columns) == list(DISEASE_COLUMNS)]
    for table, role in ((shown, "reports"), (chose, "chooses")):
        want = {n: m for n, m in step["comparisons"].items() if m["role"] == role}
        assert list(table.slices) == list(want) and any(m["n_neg"] for m in want.values())
        for r in table.to_dict("records"):
            m = want[r["slices"]]
            assert r["marked / not"] == f"{m['n_pos']} / {m['n_neg']}"
            assert r["marked slices let through"] == f"{m['sensitivity']:.2f}"
            assert r["unmarked slices cleared by step 1 alone"] == (f"{m['specificity']:.2f}" if m["n_neg"] else "")


def test_disease_page_without_external_json_names_the_command(runs):
    at = app("views/disease.py", {"run_name": "unscored"})
    assert any("has not been scored on other hospitals yet" in i.value
               and f"python -m train external --run {runs / 'unscored'}" in i.value for i in at.info)
    assert not [d for d in at.dataframe if "AUC [95% CI]" in d.value.columns]
