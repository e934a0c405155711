"""The dashboard while a run trains, through Streamlit's AppTest: every page on a run that has only config.json and
a progress log (no stage finished), the Training page on a finished phantom run and beside a run in training, the
Data page on the phantoms (filters, lung fields, lesions once the run has a segmenter, COVID-CT-MD by patient), and
New slice on a run whose segmenter has ended (the Scan page's lesion mode: tests/test_scan_page.py).

Expected values come from core (RunProgress, the catalogue's readers, the summary files), not from the pages'
own helpers.
"""
from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from core.after_training import KIND as AFTER_KIND
from core.after_training import planned
from core.knowledge.signs import NAMES
from core.models.network import SEGMENTER
from core.runs.progress import RunProgress
from tests.live_runs import run_in_training
from tests.test_dashboard import NOTICE, app, no_exception

PAGES = {None: "predictions", "views/training.py": None, "views/data.py": None, "views/map.py": "complete",
         "views/disease.py": "predictions", "views/case.py": "complete", "views/margin.py": "predictions",
         "views/new_slice.py": "lesions", "views/scan.py": "lesions"}


@pytest.fixture(scope="module")
def live_runs(synthetic_run, module_scratch):
    """runs/fresh: config.json and a progress log up to the global branch's first epoch (no stage finished);
    runs/tiny: the finished synthetic run. fresh is the newest (the sidebar opens on it)."""
    import os
    import time

    runs = module_scratch("live-runs")
    shutil.copytree(synthetic_run, runs / "tiny")
    run_in_training(synthetic_run, runs / "fresh", "global", 1)
    now = time.time()
    os.utime(runs / "tiny", (now - 60, now - 60))
    mp = pytest.MonkeyPatch()
    mp.setenv("COVID_LAB_RUNS", str(runs))
    mp.setenv("COVID_LAB_BOOT", "40")
    yield runs
    mp.undo()


def texts(at) -> str:
    return " ".join(e.value for kind in ("markdown", "info", "caption", "error", "title") for e in getattr(at, kind))


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_opens_on_a_run_in_training(live_runs, page):
    at = app(page)
    no_exception(at)
    assert at.sidebar.selectbox(key="run_name").value == "fresh"
    assert NOTICE in " ".join(w.value for w in at.warning)
    shown = texts(at)
    rp = RunProgress.read(live_runs / "fresh")
    assert rp.state == "training" and not any(s.done for s in rp.stages.values())
    need = PAGES[page]
    if need is None:
        return
    training = [name for name, sp in rp.stages.items() if sp.kind != AFTER_KIND]  # pages wait for training alone
    waited = {"predictions": "global", "lesions": SEGMENTER}.get(need, training[-1])
    assert any(f"**{waited}**" in i.value and "not trained yet" in i.value for i in at.info), shown
    # how far the training is and when the stage is expected
    assert "**global** (the global branch) is training: epoch 1 of at most 2" in shown
    assert "expected to end in " in shown and "the run ends in " in shown


def test_training_page_follows_a_run_in_training(live_runs):
    at = app("views/training.py")
    no_exception(at)
    rp = RunProgress.read(live_runs / "fresh")
    table = at.dataframe[0].value
    assert list(table.stage) == list(rp.stages)
    assert list(table.state) == ["training"] + ["waiting"] * (len(rp.stages) - 1)
    g = table.set_index("stage").loc["global"]
    assert g["epochs"] == "1 of at most 2" and g["ends in"] and g["best epoch"] == 1
    assert "Training since" in texts(at) and "now **global**" in texts(at)
    epochs = at.dataframe[1].value
    assert list(epochs.epoch) == [1] and epochs["val AUC"].iloc[0] == pytest.approx(rp.stage("global").rows[0]["val_auc"])


def test_training_page_on_a_finished_run_and_beside_another(live_runs):
    summary = json.loads((live_runs / "tiny" / "global" / "summary.json").read_text())
    at = app("views/training.py", {"run_name": "tiny", "training_stage": "global"})
    no_exception(at)
    rp = RunProgress.read(live_runs / "tiny")
    from dashboard.progress_tables import duration

    trained = duration(sum(sp.seconds for sp in rp.stages.values()))
    assert f"; its stages trained for {trained} in all; the last call of the pipeline took " in texts(at)
    table = at.dataframe[0].value
    assert list(table.stage) == ["global", "heatmap", "infnet", "infected", "global+heatmap", "fusion",
                                 *(st.name for st in planned(audits=False))]  # then the stages after training
    assert set(table.state) == {"done"}
    epochs = at.dataframe[1].value
    assert list(epochs.epoch) == [h["epoch"] for h in summary["history"]]
    assert list(epochs["val AUC"]) == pytest.approx([h["val_auc"] for h in summary["history"]])
    assert list(epochs["train loss"]) == pytest.approx([h["train_loss"] for h in summary["history"]])
    assert len(at.get("plotly_chart")) == 1
    # the segmenter: loss per round, no validation AUC
    at.segmented_control(key="training_stage").set_value("infnet").run()
    no_exception(at)
    seg = at.dataframe[1].value
    assert list(seg.columns[:3]) == ["part", "epoch", "slices"] and seg.part.iloc[0] == "round 0"
    # beside the run in training: both runs' stage tables and both runs' rows of the stage
    at = app("views/training.py", {"run_name": "tiny", "compare_name": "fresh", "training_stage": "global"})
    no_exception(at)
    assert [s.value for s in at.subheader] == ["tiny", "fresh"]
    stage_tables = [d.value for d in at.dataframe if "state" in d.value.columns]
    assert [len(t) for t in stage_tables] == [len(RunProgress.read(live_runs / n).stages) for n in ("tiny", "fresh")]
    epoch_tables = [d.value for d in at.dataframe if "val AUC" in d.value.columns]
    assert [len(t) for t in epoch_tables] == [len(summary["history"]), 1]


def test_data_page_before_the_segmenter(live_runs, phantom_root):
    from core.data.catalogue import catalogue

    at = app("views/data.py")
    no_exception(at)
    cat, missing = catalogue(phantom_root)
    assert not missing and (cat.source == "COVID-CT-MD").any()  # the phantoms hold every source
    assert f"**{(cat.source == 'COVID-CT').sum()} slices**" in texts(at)
    shown = texts(at)
    assert "once round 0 of the run's segmenter (stage **infnet**) has ended" in shown
    assert "lesions: once round 0 of the segmenter (infnet) has ended" in shown
    captions = image_captions(at)
    assert captions[:2] == ["the slice", "lung field"] and not any(c.startswith(LESIONS) for c in captions)
    assert len(captions) == 2 + 12  # the slice shown, then a page of cards (each its lung field outlined)


LESIONS = "lesions: the run's segmenter (p > 0.5)"


def image_captions(at) -> list[str]:
    return [c for el in at.image for c in el.captions]


def test_data_page_with_the_segmenter(live_runs, phantom_root):
    from core.data.catalogue import catalogue

    cat, _ = catalogue(phantom_root)
    at = app("views/data.py", {"run_name": "tiny"})
    no_exception(at)
    shown = texts(at)
    assert "the run's segmenter's lesions in red" in shown
    signs = [d.value for d in at.dataframe if "sign" in d.value.columns]
    assert len(signs) == 1 and list(signs[0].sign) == list(NAMES.values())
    captions = image_captions(at)
    assert captions[:2] == ["the slice", "lung field"] and captions[2].startswith(LESIONS)
    # COVID-SemiSeg, labelled test slices only: the expert's mask beside the segmenter's lesions
    at.selectbox(key="data_source").set_value("COVID-SemiSeg").run()
    semiseg = cat[cat.source == "COVID-SemiSeg"]
    assert f"**{len(semiseg)} slices**" in texts(at)
    assert at.multiselect(key="data_groups_COVID-SemiSeg").options == ["labelled train", "labelled test", "unlabelled"]
    at.multiselect(key="data_groups_COVID-SemiSeg").set_value(["labelled test"]).run()
    no_exception(at)
    n = int((semiseg.group == "labelled test").sum())
    assert f"**{n} slices** (of {len(semiseg)} in COVID-SemiSeg)" in texts(at)
    assert [b.key for b in at.button if b.key and b.key.startswith("data_show_")] == \
        [f"data_show_{k}" for k in semiseg.key[semiseg.group == "labelled test"]]
    assert f"`{semiseg.key[semiseg.group == 'labelled test'].iloc[0]}`" in [s.value for s in at.subheader]
    captions = image_captions(at)
    assert captions[2].startswith(LESIONS) and captions[3] == "the expert's infection mask (yellow)"


def test_data_page_shows_preliminary_lesions_while_the_segmenter_trains(live_runs, synthetic_run, tmp_path,
                                                                     monkeypatch):
    """Once round 0 of the segmenter has ended, the Data page shows the lesions and signs of the model after its last
    finished round, says they are preliminary and after which round, and keeps its final ones for the stage's end."""
    from core.pictures import data_views
    from core.runs.runfolder import RunFolder
    from core.training.segmentation import LATEST, STATE, finished_rounds

    runs = tmp_path / "runs"
    run = run_in_training(synthetic_run, runs / "segmenting", "infnet", 1)
    seg = run / "infnet"
    (seg / LATEST).parent.mkdir(parents=True)
    assert data_views.lesion_source(RunFolder(run)) is None  # round 0 not ended: no lesions yet
    shutil.copyfile(synthetic_run / "infnet" / LATEST, seg / LATEST)
    state = json.loads((synthetic_run / "infnet" / STATE).read_text())
    (seg / STATE).write_text(json.dumps({**state, "rounds_done": 1}))
    source = data_views.lesion_source(RunFolder(run))
    assert not source.final and source.rounds_done == finished_rounds(seg) == 1 and source.path == seg / LATEST
    monkeypatch.setenv("COVID_LAB_RUNS", str(runs))
    at = app("views/data.py")
    no_exception(at)
    shown = texts(at)
    assert "Preliminary: the lesions and signs shown are the run's segmenter's after pseudo-label round 1" in shown
    captions = image_captions(at)
    assert captions[2].startswith(f"{LESIONS}, preliminary (after pseudo-label round 1)")
    assert any("Radiological signs" in m and "preliminary" in m for m in (e.value for e in at.markdown))
    shutil.copyfile(synthetic_run / "infnet" / "best.pt", seg / "best.pt")  # the stage ends: the final lesions
    assert data_views.lesion_source(RunFolder(run)).final
    at = app("views/data.py")
    no_exception(at)
    assert "Preliminary" not in texts(at) and image_captions(at)[2].startswith(LESIONS)
    assert "preliminary" not in image_captions(at)[2]


def test_data_page_flags_near_duplicates(live_runs, phantom_root):
    from core.data.catalogue import catalogue

    cat, _ = catalogue(phantom_root)
    a, b = cat.key[cat.source == "COVID-CT"].iloc[:2]
    (live_runs / "audit.json").write_text(json.dumps({"near_duplicates": [
        {"a": a, "b": b, "distance": 2, "cross_class": False, "a_split": "train", "b_split": "train"}]}))
    try:
        at = app("views/data.py")
        no_exception(at)
        at.checkbox(key="data_dups").check().run()
        no_exception(at)
        assert "**2 slices** (of" in texts(at)
        assert any(f"near-duplicate of {b}" in w.value for w in at.warning)
    finally:
        (live_runs / "audit.json").unlink()


def test_data_page_lists_covid_ct_md_by_patient(live_runs, phantom_root, tmp_path):
    """A data root with COVID-CT-MD: its patients are the page's groups, in body order."""
    from core.runs.runfolder import RunFolder
    from tests.dicom_series import CTMD_PATIENTS, write_ctmd

    root = tmp_path / "data"
    shutil.copytree(phantom_root, root)
    write_ctmd(root, n=3)
    RunFolder(live_runs / "fresh").update_config(data_root=str(root))
    try:
        at = app("views/data.py")
        no_exception(at)
        at.selectbox(key="data_source").set_value("COVID-CT-MD").run()
        no_exception(at)
        assert sorted(at.multiselect(key="data_groups_COVID-CT-MD").options) == sorted(CTMD_PATIENTS)
        assert at.multiselect(key="data_groups_COVID-CT-MD").label == "Patient"
        assert f"**{3 * len(CTMD_PATIENTS)} slices**" in texts(at)
    finally:
        RunFolder(live_runs / "fresh").update_config(data_root=str(phantom_root))


def test_runs_in_training_are_listed_and_compared_once_finished(live_runs):
    from core.runs.run_view import list_runs

    assert list_runs(live_runs) == ["tiny"]
    assert list_runs(live_runs, in_training=True) == ["fresh", "tiny"]
    at = app(None, {"run_name": "tiny", "compare_name": "fresh"})
    no_exception(at)
    assert "Compare with: `fresh` has not finished training" in texts(at)
    assert not any("Difference" in m.value for m in at.markdown)


def test_a_failed_training_says_why(live_runs):
    from core.runs.progress import OUTPUT, ProgressLog

    run = live_runs / "broken"
    run.mkdir()
    shutil.copyfile(live_runs / "fresh" / "config.json", run / "config.json")
    log = ProgressLog.of_run(run)
    log.plan([{"stage": "global", "kind": "image", "epochs": 2}])
    log.failed(ValueError("no slices in covid-ct/splits"))
    (run / OUTPUT).write_text("loading...\nerror: no slices in covid-ct/splits\n")
    try:
        at = app(None, {"run_name": "broken"})
        no_exception(at)
        assert "The training failed: ValueError: no slices in covid-ct/splits." in texts(at)
        assert any("error: no slices in covid-ct/splits" in c.value for c in at.code)
    finally:
        shutil.rmtree(run)


def test_a_page_watching_a_run_in_training_reruns_when_what_it_shows_changes():
    """waiting.rerun_on_change (the Data page's watch on the segmenter's rounds): the app reruns when the value read
    differs from what the page was drawn with, and not when it is the same."""
    from streamlit.testing.v1 import AppTest

    def script():
        import streamlit as st

        from dashboard import waiting

        st.session_state["runs"] = st.session_state.get("runs", 0) + 1
        drawn_with = st.session_state.get("drawn_with", "round 0")
        st.session_state["drawn_with"] = "round 1"  # what the page draws from now on
        waiting.rerun_on_change(lambda: "round 1", drawn_with)

    at = AppTest.from_function(script, default_timeout=30).run()
    assert not at.exception and at.session_state["runs"] == 2  # drawn with round 0, round 1 landed: once more
    at.run()
    assert at.session_state["runs"] == 3  # nothing changed: no rerun


def test_data_page_draws_only_the_lesions_its_signs_count(phantom_root, monkeypatch):
    """The segmenter sees the whole slice and may fire on the heart or the chest wall: the Data page draws its
    lesions inside the lung field only, where the signs count them."""
    from core.data.catalogue import catalogue
    from core.knowledge import slice_facts
    from core.pictures import data_views

    cat, _ = catalogue(phantom_root)
    path = cat[cat.source == "COVID-CT"].path.iloc[0]
    monkeypatch.setattr(slice_facts, "lesion_map", lambda *a, **k: np.ones((112, 112), np.float32))  # lesion everywhere
    view = data_views.draw(path, "", data_views.CLASSICAL, segmenter=object(), seg=None)
    fr = slice_facts.frame(path)
    assert fr.found and not fr.lung.all()
    card = np.asarray(Image.open(io.BytesIO(view["lesion"])).convert("RGB")).astype(int)
    grey = np.asarray(Image.open(io.BytesIO(view["slice"])).convert("RGB")).astype(int)
    coloured = np.abs(card - grey).sum(axis=2) > 30
    lung = np.asarray(Image.fromarray(fr.lung.astype(np.uint8) * 255).resize(coloured.shape[::-1])) > 127
    assert coloured[lung].mean() > 0.9 and coloured[~lung].mean() < 0.05
    assert view["lesion_found"] and view["signs"]["lesion_share"] == 1.0


def test_while_the_classifiers_train_a_new_slice_shows_its_lesions_and_signs(dash_env, rv, tmp_path, monkeypatch):
    """New slice on a run whose segmenter has ended but whose classifiers train: the slice's lung field, lesions and
    signs from the segmenter alone (as core.inference.LesionReader gives them), no probability; a bad file is one
    error line as on the whole page."""
    from core.inference import LesionReader
    from core.pictures.data_views import fields, pipeline_config
    from core.runs.runfolder import RunFolder
    from core.training.segmentation import load_segmenter
    from dashboard.data_browser import signs_table
    from tests.live_runs import run_in_training
    from tests.test_dashboard import _png_of

    run = run_in_training(dash_env, tmp_path / "runs" / "early", "infected", 1)  # the segmenter's stage has ended
    assert (run / SEGMENTER / "best.pt").exists() and not (run / "fusion").exists()
    monkeypatch.setenv("COVID_LAB_RUNS", str(tmp_path / "runs"))
    png = _png_of(rv, rv.predictions.key.iloc[0])
    at = app("views/new_slice.py")
    no_exception(at)
    at.file_uploader(key="upload").set_value(("slice.png", png, "image/png")).run()
    no_exception(at)
    shown = " ".join(i.value for i in at.info)
    assert "is still training" in shown and "what its final segmenter finds on the slice" in shown
    assert not [d for d in at.dataframe if list(d.value.columns) == ["branch", "p(COVID)"]]
    (signs,) = [d.value for d in at.dataframe if list(d.value.columns) == ["sign", "value"]]
    slice01 = np.asarray(Image.open(io.BytesIO(png)).convert("L"), np.float32) / 255
    folder = RunFolder(run)
    expected = LesionReader(pipeline_config(folder), fields(folder, True),
                            load_segmenter(str(run / SEGMENTER / "best.pt"))).analyse(slice01).signs
    assert signs.equals(signs_table(expected.to_dict()))
    assert len(at.get("image")) == 2  # the slice with its lung field, and its lesions
    at.file_uploader(key="upload").set_value(("notes.dcm", b"hello", "application/octet-stream")).run()
    no_exception(at)
    assert [e.value for e in at.error if e.value.startswith("notes")]


def test_a_waiting_page_links_the_pages_open_already(dash_env, tmp_path, monkeypatch):
    """Mid-run, a page that waits names the pages whose stage has landed, each a link: the segmenter and the first
    classifiers have ended, so the Map (which waits for the whole run) links Overview, the disease page, Margin review,
    New slice and Scan; on a run with no stage ended it links none."""
    from dashboard import waiting

    runs = tmp_path / "runs"
    run_in_training(dash_env, runs / "early", "infected", 1)
    monkeypatch.setenv("COVID_LAB_RUNS", str(runs))
    at = app("views/map.py")
    no_exception(at)
    links = {link.proto.page: link.proto.label for link in at.get("page_link")}
    opened = {page for page, need in PAGES.items()
              if need not in (None, "complete") and waiting.ready(str(runs), "early", need)}
    assert opened == {None, "views/disease.py", "views/margin.py", "views/new_slice.py", "views/scan.py"}
    assert set(links) == {"", "disease", "margin", "new_slice", "scan", "training"}  # url paths; "": the Overview
    assert links["new_slice"] == f"New slice: {waiting.OPEN_ALREADY['New slice']}"
    assert "Open already on run `early` (the Data page shows the segmenter's lesions too):" in texts(at)
    shutil.rmtree(runs / "early")
    run_in_training(dash_env, runs / "fresh", "global", 1)
    at = app("views/map.py")
    no_exception(at)
    assert [link.proto.page for link in at.get("page_link")] == ["training"]
    assert "Open already" not in texts(at)
