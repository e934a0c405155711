"""The stages after training (core/after_training.py): the audits and precompute run in `train pipeline` on the
phantoms and appear in the progress log, --no-audits skips the audits, a resumed pipeline does not redo a
finished stage whose inputs did not change, and precompute fills the caches the Map and Data pages read."""
from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import replace

import pandas as pd
import pytest

from core import after_training
from core.after_training import AFTER_TRAINING, RECORD, planned
from core.audits import external as external_audit
from core.config import PipelineConfig
from core.pipeline import Pipeline
from core.runs.progress import PROGRESS_FILE, RunProgress, read_events
from core.runs.runfolder import RunFolder
from core.trust import probes as ood_probes
from core.trust import quantus_checks as qc

AUDITS = [s.name for s in AFTER_TRAINING if s.audit]


SMALLER = {"shortcut": {"limit": 2}, "fidelity": {"limit": 2}, "trust": {"slices": 1, "methods": ("eq1",)}}  # speed


@pytest.fixture(scope="module")
def audited(synthetic_run, phantom_root, module_scratch):
    """A copy of the synthetic run (trained without audits) resumed with them: only the stages after training run
    (precompute is kept: the synthetic run's pipeline ran it with the same inputs)."""
    mp = pytest.MonkeyPatch()
    mp.setattr(after_training, "AFTER_TRAINING", tuple(replace(s, sizes={**s.sizes, **SMALLER.get(s.name, {})})
                                                      for s in AFTER_TRAINING))
    # speed: fewer perturbation steps, noisy copies, bootstrap resamples and non-CT probes (the same code, less CPU)
    mp.setattr(qc, "REGIONS", 3)
    mp.setattr(qc, "SENSITIVITY_SAMPLES", 2)
    mp.setattr(external_audit, "N_BOOT", 50)  # the external report's AUC intervals
    all_probes = ood_probes.probes
    mp.setattr(ood_probes, "probes", lambda per_kind, seed: all_probes(1, seed))
    mp.setattr(ood_probes, "PHOTOS", ood_probes.PHOTOS[:2])
    mp.setattr(ood_probes, "HELD_OUT_PHOTOS", ood_probes.HELD_OUT_PHOTOS[:2])
    path = module_scratch("audited") / "tiny"
    shutil.copytree(synthetic_run, path)
    run = RunFolder(path)
    cfg = PipelineConfig.from_saved({**run.config["pipeline"], "audits": True})
    timings = Pipeline(run, phantom_root, cfg, progress=False).run_all()
    yield path, timings
    mp.undo()


def _events(path, kind):
    return [e for e in read_events(path / PROGRESS_FILE)[0] if e["event"] == kind]


def test_the_audits_run_as_stages_named_in_the_progress_log(audited):
    path, timings = audited
    for stage in AFTER_TRAINING:
        for f in stage.writes:
            assert (path / f).exists(), f"{stage.name} did not write {f}"
        assert stage.name in timings or not stage.audit  # each audit ran, and was timed
    plan = _events(path, "plan")[-1]["stages"]
    names = [p["stage"] for p in plan]
    assert names[-len(AFTER_TRAINING):] == [s.name for s in AFTER_TRAINING]  # after training, in the table's order
    assert all(p["kind"] == "analysis" and p["planned_images"] >= 0 for p in plan[-len(AFTER_TRAINING):])
    ended = {e["stage"]: e for e in _events(path, "stage_end")}
    assert all(s.name in ended and "error" not in ended[s.name] for s in AFTER_TRAINING), ended
    rp = RunProgress.read(path)
    assert all(rp.stage(s.name).done for s in AFTER_TRAINING)
    shortcut = json.loads((path / "shortcut.json").read_text())
    assert shortcut["n_test"] > 0 and shortcut["branches"]
    assert json.loads((path / "trust.json").read_text())["maps"]["n_slices"] == 1  # the stage's size, not the command's


def test_a_resumed_pipeline_keeps_finished_stages(audited, phantom_root, monkeypatch):
    import core.pipeline

    path, _ = audited
    run = RunFolder(path)
    before = {f: (path / f).stat().st_mtime_ns for s in AFTER_TRAINING for f in s.writes}
    starts = len(_events(path, "stage_start"))

    def recomputed(*a, **k):
        raise AssertionError("a resume with the same networks and inputs computed a cached entry again")

    with monkeypatch.context() as m:  # the heatmap vectors and the fusion CAMs are read back, not computed
        m.setattr(core.pipeline, "fusion_cam", recomputed)
        m.setattr(Pipeline, "_pooled", recomputed)
        timings = Pipeline(run, phantom_root, PipelineConfig.of_run(run), progress=False, resume=True).run_all()
    assert not {s.name for s in AFTER_TRAINING} & set(timings)
    assert len(_events(path, "stage_start")) == starts  # nothing started again
    assert {f: (path / f).stat().st_mtime_ns for f in before} == before
    # a stage recorded under other inputs (another checkpoint, other predictions) runs again, alone
    record = run.config[RECORD]
    run.update_config(**{RECORD: {**record, "probe": {**record["probe"], "key": "stale"}}})
    first = run.config["timings"]
    timings = Pipeline(run, phantom_root, PipelineConfig.of_run(run), progress=False, resume=True).run_all()
    assert "probe" in timings and "shortcut" not in timings
    # config.json keeps every stage's last measured seconds: what this call did not run keeps the earlier time
    saved = RunFolder(path).config["timings"]
    assert saved["probe"] == timings["probe"] and saved["total"] == timings["total"]
    assert saved["shortcut"] == first["shortcut"] and set(first) <= set(saved)


def test_another_lung_field_algorithm_runs_every_stage_after_training_again(synthetic_run, phantom_root, monkeypatch):
    """The external slices' fields and signs come from the lung field, not only from the checkpoints and the
    predictions (COVID-CT's fields may stay the same while COVID-CT-MD's bases change): a new LUNG_VERSION is a new
    key for every stage after training and for the external rows read back."""
    import core.inputs.harmonise as harmonise

    run = RunFolder(synthetic_run)
    a = after_training.After(run, phantom_root)
    slices = external_audit.external_slices(phantom_root)

    def keys():
        return [after_training.inputs_key(a, s) for s in AFTER_TRAINING] + \
            [external_audit.key_of(external_audit.rows_key(run, slices))]

    before = keys()
    monkeypatch.setattr(harmonise, "LUNG_VERSION", "next")
    assert all(k != b for k, b in zip(keys(), before))


def test_new_signs_score_the_external_slices_again_and_leave_the_other_stages(synthetic_run, phantom_root,
                                                                              monkeypatch):
    """What a sign measures (SIGNS_VERSION) is part of the external stage's key and of its rows' key, not of the
    audits' (they read no sign)."""
    import core.knowledge.signs as signs

    run = RunFolder(synthetic_run)
    a = after_training.After(run, phantom_root)
    slices = external_audit.external_slices(phantom_root)

    def keys():
        return {s.name: after_training.inputs_key(a, s) for s in AFTER_TRAINING} | \
            {"rows": external_audit.key_of(external_audit.rows_key(run, slices))}

    before = keys()
    monkeypatch.setattr(signs, "SIGNS_VERSION", "next")
    monkeypatch.setattr(external_audit, "SIGNS_VERSION", "next")
    changed = {k for k, v in keys().items() if v != before[k]}
    assert changed == {"external", "rows"}


def test_the_trust_parts_read_through_lung_fields_are_keyed_by_their_algorithm(audited):
    """trust.json's maps (framed slices) and out-of-distribution rates (lung fields of the probes) are stored under
    the run's input version: the trust stage run again after a new LUNG_VERSION measures them again."""
    path, _ = audited
    trust = json.loads((path / "trust.json").read_text())
    framing = PipelineConfig.of_run(RunFolder(path)).input_version
    assert "lungs" in framing
    assert trust["maps"]["key_parts"]["input"] == framing and trust["ood"]["key_parts"]["input"] == framing


def test_no_audits_skips_them_and_is_a_derived_flag(synthetic_run, tmp_path):
    from train import pipeline
    from train.common import config_from_args

    p = argparse.ArgumentParser()
    pipeline.add_args(p)
    assert config_from_args(p.parse_args(["--out", str(tmp_path / "r"), "--no-audits"]), PipelineConfig).audits is False
    assert [s.name for s in planned(False)] == [s.name for s in AFTER_TRAINING if not s.audit]
    # the stage that fits the two-step decision is no audit for a run that decides in two steps
    assert [s.name for s in planned(False, "two-step")] == ["external"] + [s.name for s in AFTER_TRAINING if not s.audit]
    # the synthetic run is trained with audits=False: its plan names none of them, and it has no audit files
    plan = _events(synthetic_run, "plan")[-1]["stages"]
    assert not {p["stage"] for p in plan} & set(AUDITS)
    assert not (synthetic_run / "shortcut.json").exists() and not (synthetic_run / "trust.json").exists()


def test_no_precompute_leaves_out_only_what_the_pages_read(tmp_path):
    from train import pipeline
    from train.common import config_from_args

    p = argparse.ArgumentParser()
    pipeline.add_args(p)
    cfg = config_from_args(p.parse_args(["--out", str(tmp_path / "r"), "--no-precompute"]), PipelineConfig)
    assert cfg.precompute is False and cfg.audits is True
    assert [s.name for s in planned(True, precompute=False)] == [s.name for s in AFTER_TRAINING
                                                                 if s.name != "precompute"]


def test_precompute_fills_what_the_map_page_reads(synthetic_run, monkeypatch):
    """The synthetic run's pipeline ran precompute: every 3D map, the hover cards and the flag table are read, never
    computed."""
    from core.explain.embedding import METHODS
    from core.runs import run_view
    from core.runs.run_view import RunView
    from core.pictures import slice_images
    from core.trust import slices as trust_slices
    from core.trust import store

    def refuse(*_, **__):
        raise AssertionError("computed on a page visit, not by the precompute stage")

    monkeypatch.setattr(run_view, "embed_3d", refuse)
    monkeypatch.setattr(slice_images, "hover_card", refuse)
    rv = RunView(synthetic_run.parent, synthetic_run.name)
    for method in METHODS:
        for which in rv.FEATURE_SETS:
            assert rv.embedding(method, which).shape == (len(rv.feature_keys), 3)
    cards = slice_images.hover_cards(rv)
    assert list(cards) == rv.feature_keys and all(len(c) == 3 for c in cards.values())
    monkeypatch.setattr(trust_slices, "slice_flags", refuse)
    flags = trust_slices.stored_slice_flags(rv, trust_slices.flag_alpha(store.load(rv.run)), refuse)
    assert list(flags.key) == rv.feature_keys and flags.ood.isin([True, False]).all()


def test_precompute_fills_what_the_data_page_reads(synthetic_run, monkeypatch):
    """The synthetic run's pipeline drew the Data page's first page of each source (lung field, lesions, signs):
    the page reads them, never draws; they are what the page would draw live."""
    from core.pictures import data_views
    from dashboard import data_browser

    run = RunFolder(synthetic_run)
    root = run.config["data_root"]
    wanted = data_views.first_pages(root, AFTER_TRAINING[-1].sizes["data_pages"])
    sources = data_browser.catalogue(root)[0].source
    assert len(wanted) == sum(min(n, data_views.PER_PAGE) for n in sources.value_counts())
    source = data_browser.lesion_source(str(synthetic_run.parent), run.path.name)
    assert source.final and source.path == run.stage("infnet") / "best.pt"
    live = data_views.draw(*wanted[0], data_views.fields(run, True), data_browser._segmenter(str(source.path), "live"),
                           data_views.pipeline_config(run).seg)
    monkeypatch.setattr(data_views, "draw", lambda *_, **__: pytest.fail("drawn on a page visit, not by precompute"))
    views = [data_browser.slice_view(str(synthetic_run.parent), run.path.name, p, m, source) for p, m in wanted]
    assert all(v["lesion"] is not None and v["signs"] is not None for v in views)
    signs = views[0].pop("signs"), live.pop("signs")
    assert views[0] == live and pd.Series(signs[0]).equals(pd.Series(signs[1]))  # a sign not measured: NaN


def test_precompute_fills_what_the_overview_reads(synthetic_run):
    """The Overview's metric tables read the precompute stage's metrics_<split>.json, never bootstrap live."""
    from core.results.predictions import REPORTED_SPLITS
    from core.runs.run_view import RunView

    rv = RunView(synthetic_run.parent, synthetic_run.name)
    splits = [s for s in REPORTED_SPLITS if s in set(rv.predictions.split)]
    assert splits and all(rv.stored_metrics(s) is not None for s in splits)


def test_pages_open_once_the_stages_after_training_begin():
    """The pages that need the whole pipeline wait for its last training stage, not for the audits."""
    from core.runs.progress import _stage_states, fold
    from dashboard import waiting

    plan = {"event": "plan", "t": 0, "pid": 1, "stages": [{"stage": "fusion", "kind": "vector"},
                                                          *({"stage": s.name, "kind": "analysis"} for s in AFTER_TRAINING)]}
    fusion = [{"event": "stage_start", "t": 1, "pid": 1, "stage": "fusion", "kind": "vector"},
              {"event": "stage_end", "t": 2, "stage": "fusion"}]
    audit = {"event": "stage_start", "t": 3, "pid": 1, "stage": AFTER_TRAINING[0].name, "kind": "analysis"}
    for events, opens in (([plan, *fusion], False), ([plan, *fusion, audit], True)):
        rp = fold(events)
        _stage_states(rp)  # as RunProgress.read does
        assert waiting.trained(rp) is opens
        assert waiting.awaited(rp, waiting.COMPLETE) == "fusion"


def _table_after(text: str, title: str) -> pd.DataFrame:
    """The Markdown table that follows the line starting with `title` in a report."""
    lines = text.split(title, 1)[1].splitlines()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    rows = rows[:next((i for i, r in enumerate(rows) if len(r) < 2), len(rows))]
    return pd.DataFrame(rows[2:], columns=rows[0])


def test_report_gives_the_coverage_and_the_flag_rate_per_source(audited, train_cli):
    path, _ = audited
    res = train_cli("report", str(path), "--bootstrap", "20")
    assert res.returncode == 0, res.stderr
    trust = json.loads((path / "trust.json").read_text())
    sets = _table_after(res.stdout, "Prediction sets per source and class")
    flags = _table_after(res.stdout, "Out-of-distribution flag per source and class")
    for table in (sets, flags):  # COVID-CT test and the external sources that report, each class apart
        assert {"COVID-CT test", "COVID-SemiSeg test", "COVID-CT-MD"} <= set(table.source)
        test = table[table.source == "COVID-CT test"].set_index("class")
        assert {c: int(n) for c, n in test.n.items()} == {c: v["n"] for c, v in trust["sets"]["per_class"].items()}
    # the trust stage measured the same sets on COVID-CT test by its own path (core.trust.conformal.run_sets)
    test = sets[sets.source == "COVID-CT test"].set_index("class")
    for cls, v in trust["sets"]["per_class"].items():
        assert float(test.at[cls, "coverage"]) == pytest.approx(v["coverage"], abs=5e-4)
    # and the flag's test rate (core.trust.probes.measure), here split by class
    test = flags[flags.source == "COVID-CT test"]
    rate = sum(int(n) * float(f) for n, f in zip(test.n, test.flagged)) / sum(int(n) for n in test.n)
    assert rate == pytest.approx(trust["ood"]["test_flag_rate"], abs=2e-3)
