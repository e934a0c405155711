"""The Scan page (dashboard/views/scan.py) and the Case view of a scan slice, through Streamlit's AppTest on the
session's synthetic run. Expected numbers come from core (core.knowledge.scan on the same series, the run's
TrainedRun), not from the dashboard's helpers.
"""
from __future__ import annotations

import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_dashboard import NOTICE, app, no_exception, texts

from core.knowledge.scan import RULE, score_volume, summarise
from tests.dicom_series import series, write_ctmd, write_series
from tests.test_imaging import dicom_bytes
from tests.phantom_series import dicom_series, nifti_bytes, right_lung_lesions

PAGE = "views/scan.py"
N = 6


@pytest.fixture(scope="module")
def phantom_scan():
    return right_lung_lesions(N, size=96, seed=5)


@pytest.fixture(scope="module")
def series_files(phantom_scan, tmp_path_factory) -> list[Path]:
    """The series' files under shuffled names, in body order."""
    return write_series(tmp_path_factory.mktemp("scan-page"), dicom_series(phantom_scan))


@pytest.fixture(scope="module")
def expected(dash_env, rv, series_files):
    """The scan's table and summary as core gives them."""
    from core.data.series import read_series
    from core.inference import TrainedRun

    table = score_volume(TrainedRun.load(dash_env), read_series(series_files[0].parent).volumes[0])
    branch = rv.decision_branch()
    return table, summarise(table, branch, rv.thresholds[branch])


def uploads(paths) -> list[tuple[str, bytes, str]]:
    return [(p.name, p.read_bytes(), "application/dicom") for p in paths]


def upload(files, state: dict | None = None):
    at = app(PAGE, state)
    no_exception(at)
    at.file_uploader(key="scan_upload").set_value(files).run()
    no_exception(at)
    return at


def count_line(at) -> str:
    lines = [t for t in texts(at) if "slices** in the series" in t]
    assert len(lines) == 1, texts(at)
    return lines[0]


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def not_synthetic_errors(at) -> list[str]:
    return [e.value for e in at.error if "Synthetic run" not in e.value]


def test_without_a_scan_the_page_asks_for_one(dash_env):
    at = app(PAGE)
    no_exception(at)
    assert NOTICE in " ".join(w.value for w in at.warning)
    assert any("Synthetic run" in e.value for e in at.error)
    assert any("Upload the files of one CT series" in i.value for i in at.info)
    assert [r for r in at.radio if r.key == "scan_source"]  # the phantom data root holds COVID-CT-MD: offered


def test_an_uploaded_series_is_scored_once_and_reported(dash_env, rv, series_files, expected, monkeypatch):
    import streamlit as st

    from dashboard import scans

    st.cache_data.clear()
    calls = []
    real = scans.score_volume
    monkeypatch.setattr(scans, "score_volume", lambda *a, **k: calls.append(1) or real(*a, **k))
    table, summary = expected
    at = upload(uploads(reversed(series_files)))  # any order: the page orders them
    assert not not_synthetic_errors(at)
    assert count_line(at).startswith(f"**{N} slices** in the series, read from **{N} files given** · ordered by "
                                     "image position · 5 mm apart · pixels 0.8 x 0.7 mm")
    assert metric(at, "Scan decision") == summary.decision.label
    for side in ("right", "left"):
        assert metric(at, f"Opacity, {side} lung") == f"{summary.opacity[side]:.1%}"
    assert metric(at, "Lesion in the lower third") == ("n/a" if np.isnan(summary.zones["lower"])
                                                       else f"{summary.zones['lower']:.0%}")
    assert any(t.startswith("**Rule** · " + RULE.words(rv.decision_branch(), rv.thresholds[rv.decision_branch()]))
               for t in texts(at))
    shown = next(d.value for d in at.dataframe if "position_mm" in d.value.columns)
    assert list(shown["index"]) == list(range(N)) and list(shown.file) == [p.name for p in series_files]
    assert np.allclose(shown.p_fusion, table.p_fusion, atol=1e-6)
    tops = [b.key for b in at.button if (b.key or "").startswith("scan_top_")]
    assert tops == [f"scan_top_{i}" for i in summary.decision.top]
    assert calls == [1]
    # A rerun and a move of the slice scroller replay the cached table
    at.run()
    slider = next(s for s in at.slider if (s.key or "").startswith("scan_slice_"))
    assert slider.value == summary.decision.top[0] and slider.max == N - 1  # opens on the slice that drives most
    slider.set_value(2).run()
    no_exception(at)
    assert calls == [1]
    assert any(t.startswith("**slice 2** · -90 mm · ") for t in texts(at))
    assert len(at.get("image")) == 3 + len(summary.decision.top)  # the slice, lesions, decision map; thumbnails


def test_the_page_says_how_far_to_trust_the_call(dash_env, rv, series_files, expected, monkeypatch):
    """The three readings of core.trust.scan_call on the scan as core scores it with the run's flag, and the run's
    record on another hospital (a hand external.json: the phantom run has none) in the slide's line too."""
    from core.data.series import read_series
    from core.inference import TrainedRun
    from core.runs.runfolder import RunFolder
    from core.trust.ood import fit_run
    from core.trust.scan_call import assess, flag_columns
    from dashboard import data, scan_report_ui

    branch = rv.decision_branch()
    table = score_volume(TrainedRun.load(dash_env), read_series(series_files[0].parent).volumes[0],
                         extra=flag_columns(fit_run(RunFolder(dash_env))))
    dec = summarise(table, branch, rv.thresholds[branch]).decision
    report = {"rule": RULE.name, "patients": {"P002": {
        "role": "reports", "diagnosis": "COVID-19", "label": 1, "scan_statistic": {branch: 0.8},
        "scan_covid": {branch: False}}}, "comparisons": {}}
    monkeypatch.setattr(data, "external_report", lambda *a: report)
    slide = []
    real = scan_report_ui.report_buttons
    monkeypatch.setattr(scan_report_ui, "report_buttons", lambda *a: slide.append(a[-1]) or real(*a))
    at = upload(uploads(series_files))
    shown = " ".join(texts(at) + [w.value for w in at.warning])
    assert "**How far to trust this call**" in shown
    trust = assess(table, dec, report)
    assert all(f"- {line}" in shown for line in trust.lines()), (trust.lines(), shown)
    assert trust.lines()[1].startswith("Unlike the training slices")  # scored with the run's flag
    assert "0 of 1 scan calls right: P002 (COVID-19) 0.800" in trust.lines()[2]
    assert slide == [trust.brief()]


def test_a_zip_with_a_stranger_names_it_and_loses_no_slice(dash_env, series_files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in series_files:
            zf.writestr(f"study/{p.name}", p.read_bytes())
        zf.writestr("study/notes.txt", "not a slice")
    at = upload([("study.zip", buf.getvalue(), "application/zip")])
    assert count_line(at).startswith(f"**{N} slices** in the series, read from **{N + 1} files given** (1 not in it, "
                                     "named below)")
    warning = next(w.value for w in at.warning if "notes.txt" in w.value)
    assert warning.count("\n- ") == 0 and warning.startswith("- study.zip/study/notes.txt: not a DICOM file")


def test_a_missing_slice_is_a_gap_in_one_line(dash_env, series_files):
    at = upload(uploads(series_files[:2] + series_files[3:]))
    assert count_line(at).startswith(f"**{N - 1} slices** in the series, read from **{N - 1} files given** · ")
    warning = next(w.value for w in at.warning if "gap:" in w.value)
    assert warning == (f"- gap: {series_files[1].name} and {series_files[3].name}: 10 mm apart, 2.0x the series' usual 5; "
                       "about 1 slice missing between them")


def test_a_nifti_volume_is_a_scan(dash_env, phantom_scan, expected):
    at = upload([("scan.nii", nifti_bytes(phantom_scan), "application/octet-stream")])
    assert count_line(at).startswith(f"**{N} slices** in the series, read from **1 file given** · ordered by NIfTI "
                                     "affine")
    assert metric(at, "Scan decision") == expected[1].decision.label


def test_a_hospital_export_folder_is_a_scan(dash_env, series_files, expected):
    """A study folder as a CD or PACS export holds it: DICOMDIR, a localizer series of its own, files with no
    extension under per-series subfolders, and a viewer's files; the page scores the largest series (the one
    scored from its files elsewhere), offers the other, and names the many files it did not read under an expander."""
    from core.data.imaging import read_slice_bytes

    from dashboard import ui

    viewer = [(f"study/VIEWER/lib{k}.dll", b"MZ not an image", "application/octet-stream")
              for k in range(ui.MAX_NAMED + 2)]
    scout = dicom_bytes(series(1, size=96)[0])
    files = ([(f"study/S1/IM{k:04d}", p.read_bytes(), "application/octet-stream") for k, p in enumerate(series_files)]
             + [("study/DICOMDIR", b"\0" * 132, "application/octet-stream"),
                ("study/S2/IM0001", scout, "application/octet-stream")] + viewer)
    at = app(PAGE)
    at.radio(key="scan_upload_how").set_value("A folder").run()
    folder = at.file_uploader(key="scan_folder")
    assert folder.accept_directory
    folder.set_value(files).run()
    no_exception(at)
    assert not not_synthetic_errors(at)
    assert count_line(at).startswith(f"**{N} slices** in the series, read from **{N + 1 + len(viewer)} files given** "
                                     f"({1 + len(viewer)} not in it, named below)")  # DICOMDIR skipped, as in a folder
    assert metric(at, "Scan decision") == expected[1].decision.label
    assert "### folder study" in texts(at)  # the scan is named by its folder
    picker = next(s for s in at.selectbox if (s.key or "").startswith("scan_series_"))
    assert len(picker.options) == 2
    warning = next(w.value for w in at.warning if "lib0.dll" in w.value)
    assert warning.count("lib") == ui.MAX_NAMED and f"and {len(viewer) - ui.MAX_NAMED} more files not read" in warning
    listed = next(e for e in at.expander if e.label == f"Files not read ({len(viewer)})")
    assert all(f"lib{k}.dll: not a DICOM file" in listed.text[0].value for k in range(len(viewer)))
    assert read_slice_bytes(files[0][1], "IM0000").shape == (96, 96)  # an extensionless file is read by content


def test_a_coronal_reformat_is_offered_but_never_scored(dash_env, series_files, expected):
    """A study's coronal reformat, with more slices than its axial series: the axial is read first; picking the
    reformat says why its slices are not scored, and nothing is."""
    coronal = series(N + 3, orientation=(1.0, 0.0, 0.0, 0.0, 0.0, -1.0), size=96, series_uid="1.2.3.8")
    at = upload(uploads(series_files) + [(f"COR{k}", dicom_bytes(ds), "application/dicom")
                                         for k, ds in enumerate(coronal)])
    assert not not_synthetic_errors(at) and metric(at, "Scan decision") == expected[1].decision.label
    picker = next(s for s in at.selectbox if (s.key or "").startswith("scan_series_"))
    assert picker.options[1].endswith(f"1.2.3.8 · {N + 3} slices · coronal")
    picker.set_value(1).run()
    no_exception(at)
    errors = not_synthetic_errors(at)
    assert len(errors) == 1 and errors[0].startswith("Series 1.2.3.8 holds coronal slices") \
        and errors[0].endswith("pick it above.")
    assert not [m for m in at.metric if m.label == "Scan decision"]


def test_a_folder_with_no_series_names_ten_files_and_lists_the_rest(dash_env):
    from dashboard import ui

    files = [(f"cd/VIEWER/file{k:02d}.dll", b"MZ", "application/octet-stream") for k in range(ui.MAX_NAMED + 3)]
    at = upload(files)
    assert not_synthetic_errors(at) == ["no DICOM series in the files given: every file is named below"]
    assert len([c for c in at.caption if ": not a DICOM file" in c.value]) == ui.MAX_NAMED
    listed = next(e for e in at.expander if e.label == f"Files not read ({ui.MAX_NAMED + 3})")
    assert listed.text[0].value.count(": not a DICOM file") == ui.MAX_NAMED + 3


@pytest.mark.parametrize("name,payload", [("notes.txt", b"hello"), ("broken.zip", b"PK\x03\x04 not really a zip"),
                                          ("vol.nii.gz", b"\x1f\x8bnot gzip at all"), ("DICOMDIR", b"an index")])
def test_nothing_readable_is_one_clear_error(dash_env, name, payload):
    at = upload([(name, payload, "application/octet-stream")])
    errors = not_synthetic_errors(at)
    assert errors and "Traceback" not in errors[0]
    assert name in " ".join(errors + [c.value for c in at.caption])  # the file is named


@pytest.fixture
def ctmd_runs(dash_env, tmp_path, monkeypatch):
    """A copy of the run whose data root holds COVID-CT-MD (tests.dicom_series.write_ctmd: 3 slices a patient)."""
    runs = tmp_path / "runs"
    shutil.copytree(dash_env, runs / dash_env.name)
    write_ctmd(tmp_path / "data")
    config = runs / dash_env.name / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "data_root": str(tmp_path / "data")}))
    monkeypatch.setenv("COVID_LAB_RUNS", str(runs))
    return runs


def test_a_covid_ct_md_patient_is_picked_from_the_runs_data_root(ctmd_runs):
    at = app(PAGE)
    no_exception(at)
    at.radio(key="scan_source").set_value("COVID-CT-MD patient").run()
    no_exception(at)
    picker = at.selectbox(key="scan_patient")
    assert picker.options[:2] == ["P001 · COVID-19 · selection: may choose settings",
                                  "P002 · COVID-19 · report only"]
    picker.set_value("cap001").run()
    no_exception(at)
    assert "### COVID-CT-MD cap001" in texts(at)
    assert count_line(at).startswith("**3 slices** in the series, read from **3 files given**")
    assert any("**Diagnosis on file** (COVID-CT-MD): CAP." in t for t in texts(at))
    assert metric(at, "Scan decision") in ("COVID-19", "not COVID-19", "no decision")


def test_a_slice_opens_in_the_case_view_and_back(dash_env, rv, series_files, expected):
    from core.data.series import read_series
    from core.inference import TrainedRun

    top = expected[1].decision.top[0]
    at = upload(uploads(series_files))
    at.button(key=f"scan_top_{top}").click().run()
    no_exception(at)
    assert any(re.fullmatch(rf"### .* · slice {top}, -?\d+ mm", t) for t in texts(at)), texts(at)
    probs = next(d.value for d in at.dataframe if list(d.value.columns) == ["branch", "p(COVID)"])
    direct = TrainedRun.load(dash_env).analyse(read_series(series_files[0].parent).volumes[0].image(top)).probs
    assert dict(zip(probs.branch, probs["p(COVID)"])) == pytest.approx(direct)
    at.switch_page("views/case.py")  # AppTest reruns the page it was told, not the one the app switched to
    assert at.slider(key="scan_case_tau").value == pytest.approx(rv.config["pipeline"]["tau"])
    at.slider(key="scan_case_tau").set_value(0.5).run()
    no_exception(at)
    assert any(t.startswith("crop box `[") for t in texts(at))
    at.button(key="scan_case_back").click().run()  # the run's own slices again
    no_exception(at)
    assert at.selectbox(key="case_pick").value in set(rv.predictions.key)


def test_opening_a_run_slice_elsewhere_leaves_the_scan_slice(dash_env, rv, series_files, expected):
    at = upload(uploads(series_files))
    at.button(key=f"scan_top_{expected[1].decision.top[0]}").click().run()
    at.switch_page("views/margin.py").run()
    first = next(b for b in at.button if (b.key or "").startswith("open_"))
    first.click().run()
    no_exception(at)
    assert at.selectbox(key="case_pick").value == first.key[len("open_"):]


def test_the_scan_report_downloads(dash_env, series_files, monkeypatch):
    from PIL import Image
    from streamlit.delta_generator import DeltaGenerator

    from dashboard.case_report import SIZE

    seen = {}  # AppTest does not hand back a download's bytes: keep what the page passed
    real = DeltaGenerator.download_button

    def spy(self, label, data, file_name=None, mime=None, **kw):
        seen[label] = (data, file_name, mime)
        return real(self, label, data, file_name, mime, **kw)

    monkeypatch.setattr(DeltaGenerator, "download_button", spy)
    at = upload(uploads(series_files))
    assert "Download the table (CSV)" in [b.label for b in at.get("download_button")]
    make_png, name, mime = seen["Download scan report (PNG)"]
    assert mime == "image/png" and name.startswith("scan-report_") and name.endswith(".png")
    png = make_png()  # deferred: built when clicked
    assert Image.open(io.BytesIO(png)).size == SIZE
    assert seen["Download scan report (PDF)"][0]()[:5] == b"%PDF-"
    out = Path(__file__).resolve().parent.parent / "test-artifacts" / "scan-report.png"
    out.parent.mkdir(exist_ok=True)
    out.write_bytes(png)


def test_while_the_classifiers_train_the_page_reads_the_lesions_alone(dash_env, series_files, tmp_path, monkeypatch):
    """A run whose segmenter has finished a round but whose classifiers train: the page scores the scan with the
    segmenter alone (preliminary, said so), as core measures it, with no decision; before round 0 has ended it
    waits for it; once the segmenter's stage has ended its lesions are the final ones."""
    from core.data.series import read_series
    from core.inference import LesionReader
    from core.models.network import SEGMENTER
    from core.pictures.data_views import fields, pipeline_config
    from core.runs.runfolder import RunFolder
    from core.training.segmentation import LATEST, STATE, load_segmenter
    from tests.live_runs import run_in_training

    runs = tmp_path / "runs"
    run = run_in_training(dash_env, runs / "segmenting", SEGMENTER, 1)
    monkeypatch.setenv("COVID_LAB_RUNS", str(runs))
    at = app(PAGE)
    no_exception(at)
    assert any(f"needs the first round of **{SEGMENTER}**" in i.value for i in at.info), [i.value for i in at.info]
    assert not [u for u in at.get("file_uploader")]

    seg = run / SEGMENTER
    (seg / LATEST).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(dash_env / SEGMENTER / LATEST, seg / LATEST)
    state = json.loads((dash_env / SEGMENTER / STATE).read_text())
    (seg / STATE).write_text(json.dumps({**state, "rounds_done": 1}))
    at = upload(uploads(series_files))
    assert not not_synthetic_errors(at)
    shown = " ".join(i.value for i in at.info)
    assert "is still training" in shown and "after pseudo-label round 1 (preliminary)" in shown
    assert "Scan decision" not in [m.label for m in at.metric]
    cfg = pipeline_config(RunFolder(run))
    reader = LesionReader(cfg, fields(RunFolder(run), False), load_segmenter(str(seg / LATEST)))
    table = score_volume(reader, read_series(series_files[0].parent).volumes[0])
    summary = summarise(table, None)
    for side in ("right", "left"):
        assert metric(at, f"Opacity, {side} lung") == f"{summary.opacity[side]:.1%}"
    shown_table = next(d.value for d in at.dataframe if "position_mm" in d.value.columns)
    assert [c for c in shown_table.columns if c.startswith("p_")] == ["p_lesion-share"]
    assert np.allclose(shown_table["p_lesion-share"], table["p_lesion-share"])
    assert len(at.get("image")) == 2  # the slice and its lesions: no decision map, no slices that drive a decision

    shutil.copyfile(dash_env / SEGMENTER / "best.pt", seg / "best.pt")  # the stage ends: its final model
    at = upload(uploads(series_files))
    shown = " ".join(i.value for i in at.info)
    assert "what its final segmenter finds" in shown and "preliminary" not in shown


def test_a_segmenter_that_cannot_read_the_scan_is_said_in_one_line(dash_env, series_files, tmp_path, monkeypatch):
    from core.models.network import SEGMENTER
    from core.training.segmentation import LATEST, STATE
    from tests.live_runs import run_in_training

    run = run_in_training(dash_env, tmp_path / "runs" / "segmenting", SEGMENTER, 1)
    (run / SEGMENTER / LATEST).parent.mkdir(parents=True, exist_ok=True)
    (run / SEGMENTER / LATEST).write_bytes(b"not a checkpoint")  # a damaged preliminary model
    (run / SEGMENTER / STATE).write_text((dash_env / SEGMENTER / STATE).read_text())
    monkeypatch.setenv("COVID_LAB_RUNS", str(tmp_path / "runs"))
    at = upload(uploads(series_files))
    (error,) = [e.value for e in at.error if "cannot read this scan" in e.value]
    assert error.startswith("Run `segmenting`'s segmenter cannot read this scan: ") and "latest.pt" in error



def test_the_slice_line_names_why_the_flag_marks_a_slice():
    import pandas as pd

    from dashboard.scans import slice_line

    why = "unlike the training slices to the network 1.5x the threshold"
    row = pd.Series({"position_mm": 5.0, "file": "a/IM1", "lung_found": True, "right_share": 0.1, "left_share": 0.0,
                     "ood": True, "ood_why": why})
    assert slice_line(row, 3) == f"**slice 3** · 5 mm · `IM1` · **{why}** · lesion share, right lung 10.0% · " \
                                 "lesion share, left lung 0.0%"
    assert "unlike" not in slice_line(row.drop(["ood", "ood_why"]), 3)  # scored without the flag
    passed = row.copy()
    passed["ood"] = False
    assert "unlike" not in slice_line(passed, 3) and "no lung field" not in slice_line(passed, 3)


def test_the_upload_limit_is_the_servers_and_takes_a_whole_scan(dash_env):
    """The limit the page states is the one .streamlit/config.toml declares (the server enforces it), and it takes a
    whole thin-slice chest CT as one file: 400 slices of 512 x 512 at 16 bits, as a .zip or an Enhanced CT file."""
    import tomllib

    config = Path(__file__).resolve().parent.parent / ".streamlit" / "config.toml"
    limit = tomllib.loads(config.read_text())["server"]["maxUploadSize"]
    assert limit * 2 ** 20 >= 400 * 512 * 512 * 2
    at = app(PAGE)
    assert f"up to {limit} MB a file" in at.file_uploader(key="scan_upload").label
