"""Can this map and this decision be trusted, on the dashboard (issue 29, items 2-4): the map verdicts and the
flagged CAM labels, the prediction-set level in the sidebar and each slice's set (Case, New slice, Map, Margin
review), the out-of-distribution flag, and the per-source tables of the "Does it look at the disease?" page.

Two copies of the session's synthetic run: `trusted` with a maps part written into its trust.json (made-up means
on either side of each pass rule, so the verdicts are known) and an external.csv in core.audits.external's row
format; `bare` with neither. Expected sets and flags come from core.trust (conformal.fit_run, ood.fit_run), the
expected coverage from the sets by hand, not from the pages' helpers."""
from __future__ import annotations

import io
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.runs.run_view import RunView
from core.runs.runfolder import RunFolder
from core.trust import store
from core.trust.conformal import LEVEL, fit_run
from core.trust.image_check import measure_file
from core.trust.map_checks import DEFAULT_SLICES
from core.trust.ood import FLAG_COLUMN, IMAGE_COLUMN, NETWORK_COLUMN
from core.trust.ood import fit_run as fit_flag
from core.trust.slices import OOD_LABEL, SET_LABELS, TWO_CLASS
from tests.test_dashboard import app, no_exception, texts

FAILING = "eq1"  # its map does not change when the weights are randomised (made up below)
PASSING = "gradcam"
LOW = 0.80  # with the synthetic run's 8 validation slices a class, the lowest level whose sets are not all two-class


def _maps_rows() -> list[dict]:
    """Means that put eq1 below the randomisation rule and Grad-CAM and the fusion CAM above every rule."""
    base = {("random", "faithfulness"): 0.04, ("edge", "faithfulness"): 0.06, ("uniform", "auc"): 0.5,
            ("random", "auc"): 0.55, ("edge", "auc"): 0.62, ("edge", "randomisation"): 1.0,
            ("edge", "max_sensitivity"): 0.0}
    good = {"randomisation": 0.12, "faithfulness": 0.2, "max_sensitivity": 0.1, "auc": 0.9}
    rows = []
    for branch, methods in (("global", {FAILING: {**good, "randomisation": 0.91}, PASSING: good}),
                            ("fusion", {"fusion-cam": good})):
        for (m, k), v in base.items():
            rows.append({"branch": branch, "method": m, "kind": "baseline", "metric": k, "n": 2, "mean": v, "std": 0})
        for m, values in methods.items():
            rows += [{"branch": branch, "method": m, "kind": "method", "metric": k, "n": 2, "mean": v, "std": 0}
                     for k, v in values.items()]
    return rows


def _external(rv: RunView) -> pd.DataFrame:
    """Scored external rows as core.audits.external writes them: COVID-SemiSeg's test slices (all COVID) and
    COVID-CT-MD's reported patients; a chooser row and COVID-CT rows that must be left out; every third slice far
    from training."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        rows.append({"source": "semiseg", "group": "test", "role": "reports", "label": 1, "diagnosis": "COVID-19",
                     "infection_visible": np.nan})
    for patient, diagnosis, label in (("P002", "COVID-19", 1), ("normal002", "Normal", 0), ("cap002", "CAP", 0)):
        for i in range(8):
            rows.append({"source": "covid-ct-md", "group": patient, "role": "reports", "label": label,
                         "diagnosis": diagnosis, "infection_visible": float(i % 2) if label else 0.0})
    rows.append({"source": "semiseg", "group": "train", "role": "chooses", "label": 1, "diagnosis": "COVID-19",
                 "infection_visible": np.nan})
    for label in (0, 1):  # the run's own test rows, which external.csv carries too: counted once, from predictions
        rows.append({"source": "covid-ct", "group": "test", "role": "reports", "label": label,
                     "diagnosis": "COVID-19" if label else "non-COVID", "infection_visible": np.nan})
    df = pd.DataFrame(rows)
    df[f"p_{rv.decision_branch()}"] = rng.random(len(df))
    df[FLAG_COLUMN] = np.arange(len(df)) % 3 == 0
    return df


@pytest.fixture(scope="module")
def trust_runs(synthetic_run, module_scratch):
    root = module_scratch("trust-runs")
    for name in ("trusted", "bare"):
        shutil.copytree(synthetic_run, root / name)
        for f in (store.TRUST_JSON, store.TRUST_CSV, "external.csv"):
            (root / name / f).unlink(missing_ok=True)
    run = RunFolder(root / "trusted")
    store.save(run, "maps", {"rows": _maps_rows(), "n_slices": 2, "key_parts": {"checkpoints": store.checkpoints(run)}})
    _external(RunView(root, "trusted")).to_csv(root / "trusted" / "external.csv", index=False)
    mp = pytest.MonkeyPatch()
    mp.setenv("COVID_LAB_RUNS", str(root))
    mp.setenv("COVID_LAB_BOOT", "40")
    yield root
    mp.undo()


def _open(page, run="trusted", **state):
    at = app(page, {"run_name": run, **state})
    no_exception(at)
    return at


def _all_text(at) -> str:
    return " ".join(e.value for kind in ("markdown", "info", "caption", "warning", "error") for e in getattr(at, kind))


# ---- maps -----------------------------------------------------------------------------------------------------
def test_disease_page_flags_the_failing_method_and_says_each_verdict(trust_runs):
    at = _open("views/disease.py")
    picker = at.selectbox(key="disease_map_method")
    labels = picker.options  # as the user reads them
    assert "global · The Eq. 1 map ⚠ fails randomisation" in labels, labels
    assert "global · Grad-CAM" in labels and "fusion · The fusion CAM" in labels  # passing ones: no flag
    text = " ".join(t for t in texts(at))
    assert (":orange[⚠] The Eq. 1 map does not change when the model's weights are randomised (rank correlation 0.91): "
            "do not read it as the model's reasoning.") in text
    picker.set_value(f"global/{PASSING}").run()
    text = " ".join(texts(at))
    assert (":green[✓] Grad-CAM changes when the model's weights are randomised (rank correlation 0.12): it depends on what "
            "the model learned.") in text
    table = next(d.value for d in at.dataframe if "verdict" in d.value.columns)
    eq1 = table[(table.branch == "global") & (table.method == "The Eq. 1 map")].set_index("test").verdict
    assert eq1.to_dict() == {"randomisation": "FAIL", "faithfulness": "pass", "robustness": "pass",
                             "localisation": "pass"}
    # what the verdicts rest on: the fixture's 2 slices, fewer than the full check's, said with its command
    assert (f"Measured on 2 labelled COVID-SemiSeg test slices, fewer than the {DEFAULT_SLICES} of the full check: a "
            "verdict near its line can change with more slices. `python -m train trust --run "
            f"{trust_runs / 'trusted'} --parts maps --data-root DATA` measures {DEFAULT_SLICES}.") in _all_text(at)


def test_verdicts_on_the_full_checks_slices_say_only_how_many():
    from core.trust.verdicts import basis

    full = basis(DEFAULT_SLICES, DEFAULT_SLICES, "cmd")
    assert full == f"Measured on {DEFAULT_SLICES} labelled COVID-SemiSeg test slices."
    assert basis(1, DEFAULT_SLICES, "cmd").startswith("Measured on 1 labelled COVID-SemiSeg test slice, fewer")


def test_case_names_the_flag_wherever_the_method_is_named(trust_runs):
    rv = RunView(trust_runs, "trusted")
    assert rv.pipeline.cam == FAILING
    at = _open("views/case.py")
    assert "CAM: The Eq. 1 map ⚠ fails randomisation" in " ".join(c.value for c in at.sidebar.caption)
    assert any(h.value == "Attention map (The Eq. 1 map ⚠ fails randomisation) and the tau crop" for h in at.subheader)
    text = " ".join(texts(at))
    assert "**The Eq. 1 map ⚠ fails randomisation**" in text and "**The fusion CAM**" in text
    assert "it depends on what the model learned" in text  # the fusion CAM's verdicts beside


def test_a_run_without_map_checks_names_the_command(trust_runs):
    for page in ("views/disease.py", "views/case.py"):
        at = _open(page, "bare")
        infos = " ".join(i.value for i in at.info)
        assert "not measured yet" in infos and f"python -m train trust --run {trust_runs / 'bare'} --parts maps" in infos
        assert "disease_map_method" not in [s.key for s in at.selectbox]
        assert "CAM: The Eq. 1 map ·" in " ".join(c.value for c in at.sidebar.caption)  # unmeasured: no flag


def test_stale_map_checks_say_so(trust_runs, tmp_path, monkeypatch):
    shutil.copytree(trust_runs / "trusted", tmp_path / "trusted")
    data = store.load(RunFolder(tmp_path / "trusted"))["maps"]
    store.save(RunFolder(tmp_path / "trusted"), "maps", {**data, "key_parts": {"checkpoints": {"global": "older"}}})
    monkeypatch.setenv("COVID_LAB_RUNS", str(tmp_path))
    at = _open("views/disease.py")
    assert any("measured before its models were last retrained" in w.value for w in at.warning)


# ---- prediction sets and the flag on one slice ---------------------------------------------------------------
def _set_of(rv, key, level):
    sets = fit_run(rv.run, rv.decision_branch(), level)
    return SET_LABELS[sets.set_of(float(rv.predictions.set_index("key").at[key, "p"]))]


def test_case_shows_the_decision_set_at_the_sidebar_level_and_the_flag(trust_runs):
    rv = RunView(trust_runs, "trusted")
    p = rv.predictions
    one = fit_run(rv.run, "fusion", LOW).sets(p.p.to_numpy()).sum(1) == 1
    flag = fit_flag(rv.run)
    assessed = lambda k: flag.assess(rv.fusion_input(k), [measure_file(rv.slice_paths[k])]).iloc[0]
    # a slice whose set narrows from two classes to one as the level falls, and that the flag leaves alone
    key = next(k for k in p.key[one & (fit_run(rv.run, "fusion", LEVEL).sets(p.p.to_numpy()).sum(1) == 2)]
               if not assessed(k)[FLAG_COLUMN])
    at = _open("views/case.py", selected_key=key)
    assert at.sidebar.select_slider(key="set_level").value == LEVEL
    assert f"**Prediction set** (fusion, {LEVEL:.0%}): **{TWO_CLASS}**" in _all_text(at)
    assert any("cannot tell these apart" in w.value for w in at.warning)  # a two-class set is a warning, in words
    at.sidebar.select_slider(key="set_level").set_value(LOW).run()
    no_exception(at)
    said = _all_text(at)
    assert f"**Prediction set** (fusion, {LOW:.0%}): **{_set_of(rv, key, LOW)}**" in said and _set_of(rv, key, LOW) != TWO_CLASS
    row = assessed(key)
    words = f"(distance {row[NETWORK_COLUMN]:.1f}x the threshold to the network, {row[IMAGE_COLUMN]:.1f}x in the image)"
    assert words in said and not row[FLAG_COLUMN]


def test_new_slice_flags_noise_as_unlike_the_training_slices(trust_runs):
    from core.trust.probes import noise

    rv = RunView(trust_runs, "trusted")
    buf = io.BytesIO()
    Image.fromarray((noise(0, 96) * 255).astype(np.uint8)).save(buf, format="PNG")
    at = _open("views/new_slice.py")
    at.file_uploader(key="upload").set_value(("noise.png", buf.getvalue(), "image/png")).run()
    no_exception(at)
    assert any(w.value.startswith(f"**{OOD_LABEL[0].upper() + OOD_LABEL[1:]}.**") for w in at.warning)
    probs = next(d.value for d in at.dataframe if list(d.value.columns) == ["branch", "p(COVID)"])
    p = float(probs.set_index("branch").at[rv.decision_branch(), "p(COVID)"])
    sets = fit_run(rv.run, rv.decision_branch(), LEVEL)
    assert f"**Prediction set** (fusion, {LEVEL:.0%}): **{SET_LABELS[sets.set_of(p)]}**" in _all_text(at)


# ---- the Map and Margin review -----------------------------------------------------------------------------
def test_map_offers_set_and_flag_colours(trust_runs):
    from dashboard.map_args import OOD, PREDICTION_SET, map_points

    at = _open("views/map.py", set_level=LOW)
    options = at.selectbox(key="map_colour").options
    assert PREDICTION_SET in options and OOD in options
    for colour in (PREDICTION_SET, OOD):
        at.selectbox(key="map_colour").select(colour).run()
        no_exception(at)
    rv = RunView(trust_runs, "trusted")
    keys, p = rv.feature_keys, rv.predictions.set_index("key")
    sets = fit_run(rv.run, "fusion", LOW).sets(p.loc[keys].p.to_numpy())
    assert 0 < sets.all(1).sum() < len(keys)
    stats = [measure_file(rv.slice_paths[k]) for k in keys]
    flagged = fit_flag(rv.run).assess(rv.features("fusion"), stats)[FLAG_COLUMN]
    df = rv.predictions.assign(set=[SET_LABELS[tuple(c for c, s in zip(("non-COVID", "COVID"), row) if s)]
                                    for row in fit_run(rv.run, "fusion", LOW).sets(rv.predictions.p.to_numpy())])
    df = df.merge(pd.DataFrame({"key": keys, "ood": flagged}), on="key")
    by_set = {g["name"]: g["indices"] for g in map_points(df, keys, np.zeros((len(keys), 3)), PREDICTION_SET, {})["groups"]}
    assert by_set.get(TWO_CLASS, []) == [i for i, s in enumerate(sets) if s.all()]
    by_flag = {g["name"]: g["indices"] for g in map_points(df, keys, np.zeros((len(keys), 3)), OOD, {})["groups"]}
    assert by_flag.get(OOD_LABEL, []) == [int(i) for i in np.nonzero(flagged)[0]]


def test_margin_review_keeps_two_class_sets_only(trust_runs):
    import re

    rv = RunView(trust_runs, "trusted")
    p = rv.predictions
    at = _open("views/margin.py", set_level=LOW)
    at.checkbox(key="margin_two_class").set_value(True).run()
    no_exception(at)
    sets = fit_run(rv.run, "fusion", LOW).sets(p.p.to_numpy())
    expected = sorted(p.key[sets.all(1)])
    assert 0 < len(expected) < len(p)
    counts = [t for t in texts(at) if re.match(r"\*\*\d+ cases?\*\*", t)]
    assert counts and int(re.match(r"\*\*(\d+)", counts[0]).group(1)) == len(expected)
    shown = sorted(b.key[len("open_"):] for b in at.button if b.key and b.key.startswith("open_"))
    assert set(shown) <= set(expected) and len(shown) == min(24, len(expected))


# ---- per source on the disease page -----------------------------------------------------------------------------
def test_disease_page_tables_per_source_and_class(trust_runs):
    rv = RunView(trust_runs, "trusted")
    at = _open("views/disease.py", set_level=LOW)
    cov = next(d.value for d in at.dataframe if "two-class share" in d.value.columns)
    sets = fit_run(rv.run, "fusion", LOW)
    ext = pd.read_csv(trust_runs / "trusted" / "external.csv")
    test = rv.predictions[rv.predictions.split == "test"]
    expected = {}
    for label, name in ((0, "non-COVID"), (1, "COVID")):
        part = test[test.label == label]
        expected[("COVID-CT test", name)] = (len(part), sets.sets(part.p.to_numpy())[:, label].mean())
    semi = ext[(ext.source == "semiseg") & (ext.role == "reports")]
    expected[("COVID-SemiSeg test", "COVID")] = (len(semi), sets.sets(semi.p_fusion.to_numpy())[:, 1].mean())
    md = ext[ext.source == "covid-ct-md"]
    marked = md[(md.label == 1) & (md.infection_visible == 1)]  # the COVID patient's other slices: left out
    expected[("COVID-CT-MD", "COVID-19 (infection marked)")] = (len(marked), sets.sets(marked.p_fusion.to_numpy())[:, 1].mean())
    for d in ("Normal", "CAP"):
        part = md[md.diagnosis == d]
        expected[("COVID-CT-MD", d)] = (len(part), sets.sets(part.p_fusion.to_numpy())[:, 0].mean())
    got = {(r.source, r["class"]): (r.n, r.coverage) for _, r in cov.iterrows()}
    assert got.keys() == expected.keys() and len(cov) == len(got)  # each source and class once
    for k, (n, c) in expected.items():
        assert got[k][0] == n and got[k][1] == pytest.approx(c), k
    assert len({c for _, c in got.values()}) > 1  # the sets at this level do not cover everything
    said = _all_text(at)
    assert "Coverage is expected to fall on slices from other hospitals" in said
    rates = next(d.value for d in at.dataframe if "flagged" in d.value.columns)
    got = {(r.source, r["class"]): r.flagged for _, r in rates.iterrows()}
    flag = fit_flag(rv.run)
    keys = list(test.key[test.label == 1])
    flagged = flag.assess(np.stack([rv.fusion_input(k) for k in keys]), [measure_file(rv.slice_paths[k]) for k in keys])
    assert got[("COVID-CT test", "COVID")] == pytest.approx(flagged[FLAG_COLUMN].mean())
    part = ext[(ext.source == "semiseg") & (ext.role == "reports")]
    assert got[("COVID-SemiSeg test", "COVID")] == pytest.approx(part[FLAG_COLUMN].mean())
    assert "not measured yet: `python -m train trust --run" in said  # no ood part: the non-CT inputs


def test_disease_page_without_external_rows_says_so(trust_runs):
    at = _open("views/disease.py", run="bare")
    # 8 validation slices a class: at 90% every set holds both (1 / 9 >= 0.1), and the page says so
    assert any("every set holds it, so the sets say nothing at this level" in w.value for w in at.warning)
    at.sidebar.select_slider(key="set_level").set_value(LOW).run()
    assert not any("every set holds it" in w.value for w in at.warning)
    assert any("not scored yet" in i.value for i in at.info)
    cov = next(d.value for d in at.dataframe if "two-class share" in d.value.columns)
    assert set(cov.source) == {"COVID-CT test"}
