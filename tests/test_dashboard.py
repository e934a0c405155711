"""The dashboard's pages through streamlit.testing.v1.AppTest, on the session's synthetic run.

The runs folder reaches the app through $COVID_LAB_RUNS (what `-- --runs DIR` does on the command
line). Expected values are computed here from core (RunView, threshold_box), not from the
dashboard's own helpers.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PROJECT_ROOT = Path(__file__).resolve().parent.parent
APP = str(PROJECT_ROOT / "dashboard" / "app.py")
NOTICE = "Research use only — not for clinical diagnosis"


def app(page: str | None = None, state: dict | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in (state or {}).items():
        at.session_state[k] = v
    at.run()
    if page:
        at.switch_page(page).run()
    return at


def no_exception(at):
    assert not at.exception, [e.value for e in at.exception]


def texts(at) -> list[str]:
    return [m.value for m in at.markdown]


def case_key_shown(at) -> str:
    heads = [t for t in texts(at) if t.startswith("### `")]
    assert heads, texts(at)
    return heads[0][len("### `"):-1]


@pytest.mark.parametrize("page", [None, "views/map.py", "views/case.py", "views/margin.py", "views/new_slice.py"])
def test_every_page_renders_with_notices(dash_env, page):
    at = app(page)
    no_exception(at)
    warnings = " ".join(w.value for w in at.warning)
    assert NOTICE in warnings  # on every page
    assert any("Synthetic run" in e.value for e in at.error)  # the run says it was trained on phantoms
    assert at.sidebar.selectbox(key="run_name").value == dash_env.name


def test_overview_tables(dash_env, rv):
    at = app()
    no_exception(at)
    frames = [d.value for d in at.dataframe]
    branches = rv.branches_in(rv.predictions)
    metric_tables = [f for f in frames if "sensitivity" in f.columns]
    assert len(metric_tables) == 2  # val and test
    for f in metric_tables:
        assert list(f.branch) == branches
        assert all(re.fullmatch(r"(\d\.\d{3}|nan) \[(\d\.\d{3}|nan), (\d\.\d{3}|nan)\]", v) for v in f.accuracy)
    assert any(list(f.columns[:2]) == ["backbone", "branch"] for f in frames)  # the paper's table
    total = rv.timings()["total"]  # each stage's last seconds beside what the last pipeline call took
    assert f"Each stage's seconds when it last ran; the last `train pipeline` call took {total:.1f} s." in [
        c.value for c in at.caption]


def test_overview_shows_probe_and_fidelity_tables_when_measured(dash_env, tmp_path, monkeypatch):
    """A copy of the run: without the tables the page names the commands; with them it shows them."""
    import argparse
    import shutil

    import pandas as pd

    from train import probe

    runs = tmp_path / "runs"
    shutil.copytree(dash_env, runs / dash_env.name)
    for measured in ("branch_probe.csv", "fidelity.csv"):  # other tests may have measured the shared run
        (runs / dash_env.name / measured).unlink(missing_ok=True)
    monkeypatch.setenv("COVID_LAB_RUNS", str(runs))
    captions = lambda at: " ".join(c.value for c in at.caption)
    at = app()
    no_exception(at)
    assert "python -m train probe --run" in captions(at) and "python -m train fidelity --run" in captions(at)
    probe.run(argparse.Namespace(run=str(runs / dash_env.name), folds=4))
    fidelity = pd.DataFrame([{"branch": "global", "method": "eq1", "kind": "cam", "n": 3, "pointing_hit_rate": 0.25},
                             {"branch": "global", "method": "uniform", "kind": "baseline", "n": 3, "pointing_hit_rate": 0.5}])
    fidelity.to_csv(runs / dash_env.name / "fidelity.csv", index=False)
    at = app()
    no_exception(at)
    frames = [d.value for d in at.dataframe]
    shown_probe = [f for f in frames if "trained_test_auc" in f.columns]
    assert len(shown_probe) == 1 and list(shown_probe[0].branch) == ["global", "global+heatmap", "global+infected", "fusion"]
    shown_fid = [f for f in frames if "pointing_hit_rate" in f.columns]
    assert len(shown_fid) == 1 and list(shown_fid[0].method) == ["eq1", "uniform"]
    assert "python -m train probe --run" not in captions(at)


def test_runs_folder_argument(tmp_path, monkeypatch):
    from dashboard.data import available_runs, runs_dir

    monkeypatch.delenv("COVID_LAB_RUNS", raising=False)
    assert str(runs_dir([])) == "runs"
    assert str(runs_dir(["--runs", str(tmp_path)])) == str(tmp_path)
    monkeypatch.setenv("COVID_LAB_RUNS", "/elsewhere")
    assert str(runs_dir([])) == "/elsewhere"
    assert available_runs(tmp_path / "missing") == []


def test_no_runs_is_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("COVID_LAB_RUNS", str(tmp_path))
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60).run()
    no_exception(at)
    assert any("No trained runs" in e.value for e in at.error)
    assert any(NOTICE in w.value for w in at.warning)


def test_case_page_shows_the_selected_slice(dash_env, rv):
    df = rv.predictions
    key = df[df.split == "val"].key.iloc[1]  # not the page's default (the first test slice)
    at = app("views/case.py", {"selected_key": key})
    no_exception(at)
    assert case_key_shown(at) == key
    probs = next(d.value for d in at.dataframe if list(d.value.columns) == ["branch", "p(COVID)"])
    row = df.set_index("key").loc[key]
    expected = {b: float(row[f"p_{b}"]) for b in rv.branches_in(df)}
    assert dict(zip(probs.branch, probs["p(COVID)"])) == pytest.approx(expected)
    # The picker changes the slice, and the selection follows.
    other = df[df.split == "test"].key.iloc[2]
    at.selectbox(key="case_pick").select(other).run()
    no_exception(at)
    assert case_key_shown(at) == other
    assert at.session_state["selected_key"] == other


def test_case_chart_marks_each_branchs_own_operating_point(dash_env, rv):
    """The bars carry every branch's own cut (one 0.5 line for all once made a bar look COVID that its branch calls
    non-COVID), and a bar is red exactly when its branch calls the slice COVID."""
    import json

    from dashboard.map_args import PALETTE

    df = rv.predictions
    key = df[df.split == "test"].key.iloc[3]
    at = app("views/case.py", {"selected_key": key})
    no_exception(at)
    chart = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "case_probs" in c.proto.id)
    bars = next(t for t in chart["data"] if t["type"] == "bar")
    ticks = next(t for t in chart["data"] if t.get("mode") == "markers")
    assert ticks["y"] == bars["y"]
    row = df.set_index("key").loc[key]
    for branch, x, cut, colour in zip(bars["y"], bars["x"], ticks["x"], bars["marker"]["color"]):
        assert cut == pytest.approx(rv.thresholds[branch]), branch
        assert x == pytest.approx(float(row[f"p_{branch}"]))
        assert colour == PALETTE["COVID" if x >= cut else "non-COVID"], branch
    assert len(set(ticks["x"])) > 1, "every branch at one cut: the test would not tell a shared line apart"
    assert not chart["layout"].get("shapes"), "no shared 0.5 line"


def test_tau_slider_recomputes_the_crop_box(dash_env, rv):
    from core.explain.attention import threshold_box

    key = rv.predictions[rv.predictions.split == "test"].key.iloc[0]
    size = rv.config["pipeline"]["image_size"]
    attention = rv.attention_map(key, size)

    def expected(tau):
        return "[" + ", ".join(f"{v:.3f}" for v in threshold_box(attention, tau).box.as_list()) + "]"

    def shown(at):
        hits = [re.search(r"crop box `(\[[^`]*\])`", t) for t in texts(at)]
        hits = [h.group(1) for h in hits if h]
        assert len(hits) == 1, texts(at)
        return hits[0]

    at = app("views/case.py", {"selected_key": key})
    no_exception(at)
    assert at.slider(key="tau").value == pytest.approx(rv.config["pipeline"]["tau"])
    assert shown(at) == expected(at.slider(key="tau").value)
    assert shown(at) == "[" + ", ".join(f"{v:.3f}" for v in rv.heatmap_box(key).as_list()) + "]"  # the stored box
    seen = {shown(at)}
    for tau in (0.3, 0.55, 0.9):
        at.slider(key="tau").set_value(tau).run()
        no_exception(at)
        assert shown(at) == expected(tau)
        live = next(d.value for d in at.dataframe if f"live, tau={tau:.2f}" in d.value.columns)
        assert set(live.branch) >= {"heatmap", "fusion"}
        seen.add(shown(at))
    assert len(seen) > 1  # the box moves with tau


def _expected_counts(df):
    splits = ["val", "test"]
    return {
        ("all slices", None, False): len(df),
        ("misclassified only", None, False): int((df.pred != df.label).sum()),
        ("false negatives", None, False): int(((df.label == 1) & (df.pred == 0)).sum()),
        ("false positives", None, False): int(((df.label == 0) & (df.pred == 1)).sum()),
        ("all slices", None, True): int(df.disagreement.sum()),
        ("misclassified only", tuple(splits), False): int(((df.pred != df.label) & df.split.isin(splits)).sum()),
        ("all slices", ("test",), True): int((df.disagreement & (df.split == "test")).sum()),
    }


def test_margin_filters_count(dash_env, rv):
    df = rv.predictions
    at = app("views/margin.py")
    no_exception(at)
    for (show, splits, disagree), n in _expected_counts(df).items():
        at.selectbox(key="margin_show").select(show)
        at.multiselect(key="margin_splits").set_value(list(splits) if splits else sorted(set(df.split)))
        at.checkbox(key="margin_disagree").set_value(disagree)
        at.run()
        no_exception(at)
        counts = [t for t in texts(at) if re.match(r"\*\*\d+ cases\*\*", t)]
        assert counts and int(re.match(r"\*\*(\d+) cases", counts[0]).group(1)) == n, (show, splits, disagree, counts)
        shown = [b for b in at.button if b.key and b.key.startswith("open_")]
        assert len(shown) == min(n, 24)


def test_margin_sorted_and_opens_the_case(dash_env, rv):
    df = rv.predictions
    at = app("views/margin.py")
    opens = [b for b in at.button if b.key and b.key.startswith("open_")]
    keys = [b.key[len("open_"):] for b in opens]
    margins = df.set_index("key").loc[keys].margin.to_numpy()
    assert np.all(np.diff(margins) >= 0)  # nearest the boundary first
    assert keys[0] == df.sort_values(["margin", "key"]).key.iloc[0]
    opens[3].click().run()
    no_exception(at)
    assert at.session_state["selected_key"] == keys[3]
    assert case_key_shown(at) == keys[3]


def _png_of(rv, key) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rv.image(key, 96)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("name,payload", [("broken.png", b"\x89PNG\r\n\x1a\nnot really a png"),
                                          ("notes.dcm", b"hello"), ("empty.jpg", b""),
                                          ("vol.nii.gz", b"\x1f\x8bnot gzip at all")])
def test_new_slice_malformed_upload_shows_an_error(dash_env, name, payload):
    at = app("views/new_slice.py")
    at.file_uploader(key="upload").set_value((name, payload, "application/octet-stream")).run()
    no_exception(at)
    errors = [e.value for e in at.error if "Synthetic run" not in e.value]
    assert errors and "Traceback" not in errors[0]
    assert errors[0].startswith(name.split(".")[0])  # the ImageReadError names the file


def test_new_slice_analyses_an_upload(dash_env, rv):
    key = rv.predictions.key.iloc[0]
    at = app("views/new_slice.py")
    at.file_uploader(key="upload").set_value(("../../etc/slice one.png", _png_of(rv, key), "image/png")).run()
    no_exception(at)
    assert not [e.value for e in at.error if "Synthetic run" not in e.value]
    probs = next(d.value for d in at.dataframe if list(d.value.columns) == ["branch", "p(COVID)"])
    assert list(probs.branch) == rv.branches_in(rv.predictions)
    assert probs["p(COVID)"].between(0, 1).all()
    assert any("`slice_one.png`" in t for t in texts(at))  # the name is shown, sanitised, never a path
    at.slider(key="upload_tau").set_value(0.5).run()
    no_exception(at)
    assert any(t.startswith("crop box `[") for t in texts(at))


def test_new_slice_headlines_the_decision_branch(dash_env, rv):
    """The upload's headline decision is the run's decision branch (fusion), not the last column: the
    lesion-share baseline is written last by every pipeline."""
    assert rv.branches_in(rv.predictions)[-1] == "lesion-share"
    decision = rv.decision_branch()
    assert decision == "fusion"
    key = rv.predictions.key.iloc[0]
    at = app("views/new_slice.py")
    at.file_uploader(key="upload").set_value(("slice.png", _png_of(rv, key), "image/png")).run()
    no_exception(at)
    heads = [t for t in texts(at) if "p(COVID) =" in t]
    assert len(heads) == 1 and heads[0].startswith(f"**{decision}**: p(COVID) =")
    t = rv.thresholds[decision]
    assert f"operating point {t:.3f}" in heads[0]


def test_new_slice_reads_slices_as_hospitals_and_research_sets_export_them(dash_env):
    """Hospitals export DICOM without an extension (IM0001), scans taken prone, key images as 8-bit secondary
    captures; research sets export CT numbers as 16-bit PNG. Each is read by its content: the slice the DICOM gives
    (the key image: its picture, as a PNG of it reads)."""
    from core.data.imaging import CT_STORED_OFFSET, read_slice_bytes
    from core.inference import TrainedRun
    from tests.test_imaging import chest_hu, ct_dataset, dicom_bytes, picture_dicom

    hu = chest_hu(seed=3)
    dicom = dicom_bytes(ct_dataset(hu, slope=1.0))
    prone = ct_dataset(hu[::-1, ::-1], slope=1.0)  # face down: stored upside down, and says so
    prone.ImageOrientationPatient = [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0]
    buf = io.BytesIO()
    Image.fromarray((hu + CT_STORED_OFFSET).astype(np.uint16)).save(buf, format="PNG")
    model = TrainedRun.load(dash_env)
    direct = model.analyse(read_slice_bytes(dicom, "IM0001")).probs
    picture = np.round(read_slice_bytes(dicom, "IM0001") * 255).astype(np.uint8)  # a key image: 8-bit, windowed
    as_png = model.analyse(picture.astype(np.float32) / 255).probs
    at = app("views/new_slice.py")
    assert at.file_uploader(key="upload").allowed_type == []  # any name: the content decides
    for name, data, expected in (("IM0001", dicom, direct), ("export.png", buf.getvalue(), direct),
                                 ("IM0002", dicom_bytes(prone), direct),
                                 ("KEYIMAGE", dicom_bytes(picture_dicom(picture)), as_png)):
        at.file_uploader(key="upload").set_value((name, data, "application/octet-stream")).run()
        no_exception(at)
        assert not [e.value for e in at.error if "Synthetic run" not in e.value], name
        probs = next(d.value for d in at.dataframe if list(d.value.columns) == ["branch", "p(COVID)"])
        assert dict(zip(probs.branch, probs["p(COVID)"])) == pytest.approx(expected, abs=1e-6), name


def test_new_slice_refuses_a_slice_that_is_not_axial(dash_env):
    from tests.dicom_series import dicom_bytes, series

    data = dicom_bytes(series(1, orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0), size=48)[0])  # sagittal
    at = app("views/new_slice.py")
    at.file_uploader(key="upload").set_value(("SAG0001", data, "application/dicom")).run()
    no_exception(at)
    errors = [e.value for e in at.error if "Synthetic run" not in e.value]
    assert errors == ["SAG0001: a sagittal slice (a reformat or a scout): the networks read axial slices only, so it "
                      "is not scored."]
    assert not [d for d in at.dataframe if list(d.value.columns) == ["branch", "p(COVID)"]]


def test_new_slice_nifti_has_a_slice_picker(dash_env):
    import nibabel as nib

    vol = np.zeros((48, 48, 5), np.int16)
    vol[8:40, 10:38, :] = -700
    vol[20:30, 14:20, 2] = 40
    buf = io.BytesIO()
    img = nib.Nifti1Image(vol, np.eye(4))
    buf.write(img.to_bytes())
    at = app("views/new_slice.py")
    at.file_uploader(key="upload").set_value(("volume.nii", buf.getvalue(), "application/octet-stream")).run()
    no_exception(at)
    assert at.slider(key="nifti_slice").max == 4
    at.slider(key="nifti_slice").set_value(2).run()
    no_exception(at)
    assert any("slice 2" in t for t in texts(at))


def test_new_slice_multiframe_dicom_has_a_frame_picker(dash_env):
    """An Enhanced CT file on New slice: one of its frames, picked as stored, analysed as read_slice reads it."""
    from core.data.imaging import read_slice_bytes
    from core.inference import TrainedRun
    from tests.dicom_series import dicom_bytes, enhanced_ct, series

    data = dicom_bytes(enhanced_ct(series(4, size=48)))
    at = app("views/new_slice.py")
    at.file_uploader(key="upload").set_value(("enhanced.dcm", data, "application/dicom")).run()
    no_exception(at)
    picker = at.slider(key="dicom_frame")
    assert (picker.min, picker.max, picker.value) == (0, 3, 2)
    assert any("4 frames in the file" in c.value for c in at.caption)
    picker.set_value(1).run()
    no_exception(at)
    probs = next(d.value for d in at.dataframe if list(d.value.columns) == ["branch", "p(COVID)"])
    direct = TrainedRun.load(dash_env).analyse(read_slice_bytes(data, "enhanced.dcm", 1)).probs
    assert dict(zip(probs.branch, probs["p(COVID)"])) == pytest.approx(direct)


def test_upload_handler_never_raises(dash_env):
    from dashboard.uploads import analyse_upload, display_name

    class Boom:  # a model that fails after the file was read
        def analyse(self, *a, **k):
            raise RuntimeError("boom")

    res = analyse_upload(Boom(), b"GIF89a....", "x.png")
    assert res.error and res.error.startswith("x.png")
    png = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)).save(png, format="PNG")
    res = analyse_upload(Boom(), png.getvalue(), "ok.png")
    assert res.error and "could not be analysed" in res.error and "boom" not in res.error
    assert display_name("../../etc/passwd") == "passwd"
    for raw in ("C:\\x\\<b>evil</b>.dcm", "a/../../b .nii.gz", "\x00\n.png", ".."):
        assert re.fullmatch(r"[A-Za-z0-9._-]{1,80}", display_name(raw)) and ".." not in display_name(raw)
    assert display_name("") == "upload"


def test_map_page_colourings(dash_env, rv):
    from dashboard.map_args import COLOUR_BY, map_points

    at = app("views/map.py")
    no_exception(at)
    for colour in COLOUR_BY:
        at.selectbox(key="map_colour").select(colour).run()
        no_exception(at)
    at.selectbox(key="map_features").select("global").run()
    no_exception(at)
    keys = rv.feature_keys
    xyz = rv.embedding("tsne", "fusion")
    for colour in COLOUR_BY:
        args = map_points(rv.predictions, keys, xyz, colour, {})
        assert [p["key"] for p in args["points"]] == keys
        if args["continuous"] is None:
            covered = sorted(i for g in args["groups"] for i in g["indices"])
            assert covered == list(range(len(keys)))
        else:
            assert len(args["continuous"]["values"]) == len(keys)


def test_component_is_served_offline():
    from dashboard.components.scatter3d import BUILD_DIR

    html = (BUILD_DIR / "index.html").read_text()
    assert (BUILD_DIR / "plotly.min.js").stat().st_size > 1_000_000
    assert '<script src="plotly.min.js"></script>' in html
    assert not re.search(r"""src=["']https?://""", html)  # no CDN
    assert "streamlit:componentReady" in html and "streamlit:setComponentValue" in html


def test_overlays_are_pngs():
    from core.explain.attention import Box
    from core.pictures import images

    img = (np.linspace(0, 1, 64 * 64).reshape(64, 64) * 255).astype(np.uint8)
    heat = np.zeros((16, 16), np.float32)
    heat[4:8, 4:8] = 1
    out = images.overlay(img, heat, "cam", boxes=[(Box(0.25, 0.25, 0.5, 0.5), (255, 255, 0))], size=128)
    a = np.asarray(out)
    assert a.shape == (128, 128, 3)
    assert tuple(a[32, 40]) == (255, 255, 0)  # the box outline, at 1/4 of the side
    assert images.to_png(out).startswith(b"\x89PNG")
    assert images.data_uri(out, "JPEG").startswith("data:image/jpeg;base64,")


def test_strategy_comparison_from_runs_beside(dash_env, tmp_path):
    import json
    import shutil

    from dashboard import data

    assert data.strategy_comparison(str(dash_env.parent), dash_env.name, data.stamp(dash_env.parent, dash_env.name)) is None
    for name, strategy in (("a-ghif", "GHIF"), ("b-ghi-f", "GHI-F")):
        (tmp_path / name).mkdir()
        cfg = json.loads((dash_env / "config.json").read_text())
        cfg["pipeline"]["strategy"] = strategy
        (tmp_path / name / "config.json").write_text(json.dumps(cfg))
        shutil.copyfile(dash_env / "predictions.csv", tmp_path / name / "predictions.csv")
    shutil.copytree(dash_env, tmp_path / "main", ignore=shutil.ignore_patterns("*.pt"))
    table, source = data.strategy_comparison(str(tmp_path), "main", data.stamp(tmp_path, "main"))
    assert list(table.strategy) == ["GHIF", "GHI-F", "G-H-I-F"]
    assert "same backbone" in source


@pytest.fixture
def verdict_runs(dash_env, tmp_path, monkeypatch):
    """A copy of the run in a fresh runs folder: verdicts written here stay out of the shared run."""
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(dash_env, runs / dash_env.name)
    monkeypatch.setenv("COVID_LAB_RUNS", str(runs))
    return runs


def test_case_verdict_form_saves_and_shows(verdict_runs, rv):
    from core.runs.verdicts import VERDICTS, VerdictStore

    key = rv.predictions[rv.predictions.split == "test"].key.iloc[1]
    at = app("views/case.py", {"selected_key": key})
    no_exception(at)
    assert any("No verdict yet" in c.value for c in at.caption)
    at.text_input(key="case_reviewer").input("Dr Ann")  # a form: values reach the page with the submit
    at.button(key="case_save").click().run()  # no verdict chosen: refused, nothing stored
    no_exception(at)
    assert any("no verdict chosen" in e.value for e in at.error)
    at.radio(key=f"case_verdict_{key}").set_value(VERDICTS[1])
    at.text_area(key=f"case_note_{key}").input("hot spot on the heart border")
    at.button(key="case_save").click().run()
    no_exception(at)
    saved = VerdictStore.in_runs(verdict_runs).latest(rv.name)
    assert list(saved) == [key] and VerdictStore.in_runs(verdict_runs).count() == 1
    assert (saved[key]["verdict"], saved[key]["note"], saved[key]["reviewer"]) == \
        (VERDICTS[1], "hot spot on the heart border", "Dr Ann")
    assert any(t.startswith("Verdict in force: ") and VERDICTS[1] in t and "Dr Ann" in t for t in texts(at))
    assert at.session_state["_reviewer"] == "Dr Ann"  # remembered for the next slice


def test_margin_filters_by_verdict(verdict_runs, rv):
    import json

    from core.runs.verdicts import LABEL_WRONG, VERDICTS, VerdictStore
    from dashboard.verdicts_ui import NO_VERDICT

    keys = list(rv.predictions.sort_values(["margin", "key"]).key)
    store = VerdictStore.in_runs(verdict_runs)
    for k in keys[:3]:
        store.save(rv.name, k, VERDICTS[0], "", "Ann")
    store.save(rv.name, keys[3], VERDICTS[4], "", "Bob")
    pair = {"a": keys[4], "b": keys[5], "distance": 2, "cross_class": True}  # `train audit --out runs/audit.json`
    (verdict_runs / "audit.json").write_text(json.dumps({"near_duplicates": [pair]}))
    at = app("views/margin.py")
    no_exception(at)
    assert any(c.value == f"verdict: {VERDICTS[0]}" for c in at.caption)
    expected = {(VERDICTS[0],): 3, (LABEL_WRONG,): 2, (VERDICTS[0], VERDICTS[4]): 4, (NO_VERDICT,): len(keys) - 6,
                (VERDICTS[2],): 0}
    for chosen, n in expected.items():
        at.multiselect(key="margin_verdicts").set_value(list(chosen)).run()
        no_exception(at)
        counts = [t for t in texts(at) if re.match(r"\*\*\d+ cases\*\*", t)]
        assert int(re.match(r"\*\*(\d+) cases", counts[0]).group(1)) == n, chosen
    assert store.count(rv.name) == 6  # the audit's pair flagged once, however often the page ran


@pytest.mark.parametrize("page", ["views/case.py", "views/margin.py"])
def test_damaged_verdict_database_does_not_take_the_page_down(verdict_runs, page):
    from core.runs.verdicts import DB_NAME

    garbage = b"not a database at all " * 50
    (verdict_runs / DB_NAME).write_bytes(garbage)
    at = app(page)
    no_exception(at)
    errors = [e.value for e in at.error if "verdicts are unavailable" in e.value]
    assert errors and DB_NAME in errors[0] and "Traceback" not in errors[0]
    assert (verdict_runs / DB_NAME).read_bytes() == garbage
