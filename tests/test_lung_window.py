"""core.knowledge.lung_window: a slice shown in a soft-tissue window has black lungs, which no step can read; a slice in
the lung window never does. Checked on drawn CT phantoms read through each window, and on what `train predict` and the
pages say of such a slice."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data.imaging import window
from core.data.phantom import make_phantom
from core.inputs.lungs import LungField, lung_field
from core.knowledge import lung_window
from core.knowledge.lung_window import BLACK, BODY, FIELD, lungs_black, readable

SOFT_TISSUE = (40.0, 400.0)  # level, width: the mediastinal window


def shown(window_of, seed: int = 1) -> np.ndarray:
    return window(make_phantom(seed, covid=True, size=192).hu, *window_of)


def png_bytes(img01: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.round(img01 * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_black_lies_below_anything_the_lung_window_shows_of_a_chest():
    assert float(window(np.float32(-1000))) > BLACK  # air, outside the body and in the airways: dark grey, not black
    assert float(window(np.float32(-1024))) > BLACK  # the lowest CT number a scanner stores
    assert float(window(np.float32(-850), *SOFT_TISSUE)) < BLACK  # lung tissue in the soft-tissue window


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_lung_window_is_readable_and_the_soft_tissue_window_is_not(seed):
    lung, soft = shown((-600.0, 1500.0), seed), shown(SOFT_TISSUE, seed)
    field = lung_field(lung)
    assert field.found
    assert lungs_black(lung, field) == lung_window.LungsBlack(0.0, FIELD) and readable(lungs_black(lung, field))
    on_field = lungs_black(soft, field)  # the lungs where the lung window finds them
    assert on_field.of == FIELD and on_field.share > 0.9 and not readable(on_field)
    assert not lung_field(soft).found  # as black as the air outside: the finder finds no lungs...
    on_body = lungs_black(soft, lung_field(soft))  # ...and the body, lungs enclosed, is read instead
    assert on_body.of == BODY and 0.3 < on_body.share < 0.7 and not readable(on_body)


def test_a_body_without_black_inside_is_readable_and_a_black_slice_is_not_judged():
    nothing = LungField(np.zeros((64, 64), bool), False, "no lungs")
    grey = np.full((64, 64), 0.5, np.float32)
    grey[:, :4] = 0.0  # a black border outside the body is no lung
    assert lungs_black(grey, nothing) == lung_window.LungsBlack(0.0, BODY)
    assert lungs_black(np.zeros((64, 64), np.float32), nothing) is None and readable(None)


def test_predict_says_the_lungs_of_a_soft_tissue_slice_cannot_be_read(synthetic_run, tmp_path, train_cli):
    for name, img in (("soft.png", shown(SOFT_TISSUE)), ("lung.png", shown((-600.0, 1500.0)))):
        (tmp_path / name).write_bytes(png_bytes(img))
    p = train_cli("predict", "--run", synthetic_run, tmp_path / "soft.png", tmp_path / "lung.png")
    assert p.returncode == 0, p.stderr[-2000:]
    soft, lung = [json.loads(line) for line in p.stdout.splitlines()]
    assert soft["input"]["lungs_black"]["black_share"] > 0.3 and soft["decision"]["lungs_readable"] is False
    assert soft["decision"]["lungs_why"] == lung_window.WORDS
    assert lung["input"]["lungs_black"] == {"black_share": 0.0, "of": FIELD} and lung["decision"]["lungs_readable"]
    assert "lungs_why" not in lung["decision"]


def test_new_slice_warns_that_the_lungs_are_black(dash_env):
    from test_dashboard import app, no_exception

    for img, warned in ((shown(SOFT_TISSUE), True), (shown((-600.0, 1500.0)), False)):
        at = app("views/new_slice.py")
        at.file_uploader(key="upload").set_value(("slice.png", png_bytes(img), "image/png")).run()
        no_exception(at)
        assert any(w.value.startswith(lung_window.WORDS) for w in at.warning) is warned


@pytest.mark.parametrize("page,state", [("views/case.py", "selected_key"), ("views/data.py", "data_key")])
def test_the_case_view_and_data_page_warn_on_a_slice_shown_in_a_soft_tissue_window(dash_env, rv, tmp_path,
                                                                                    monkeypatch, page, state):
    """A copy of the run whose data root holds one test slice as a soft-tissue window shows it (lungs black): the page
    warns once the file is so, not before."""
    import shutil

    from test_dashboard import app, no_exception

    from core.data.imaging import read_slice

    key = rv.predictions[rv.predictions.split == "test"].key.iloc[0]
    config = json.loads((dash_env / "config.json").read_text())
    data = tmp_path / "data"
    shutil.copytree(config["data_root"], data)
    runs = tmp_path / "runs"
    shutil.copytree(dash_env, runs / dash_env.name)
    (runs / dash_env.name / "config.json").write_text(json.dumps({**config, "data_root": str(data)}))
    monkeypatch.setenv("COVID_LAB_RUNS", str(runs))
    for darkened, warned in ((False, False), (True, True)):
        if darkened:
            path = rv.slice_paths[key]
            img = read_slice(path)
            soft = np.where(img < 0.5, 0.0, img)  # lung tissue and air under a soft-tissue window's floor
            Image.fromarray(np.round(soft * 255).astype(np.uint8)).save(data / path.relative_to(config["data_root"]))
        at = app(page, {state: key})
        no_exception(at)
        assert any(w.value.startswith(lung_window.WORDS) for w in at.warning) is warned


def test_the_shortcut_audit_scores_the_readable_slices_apart(synthetic_run, phantom_root, tmp_path):
    """(e) of core.audits.shortcut: a COVID-CT test slice whose lungs are painted black is named, and the lungs-readable
    AUC is the intact scores' AUC on the other slices (scored here by the same scorer)."""
    import shutil

    from sklearn.metrics import roc_auc_score

    from core.audits.shortcut import LUNGS_READABLE, GlobalScorer, audit, first_of_each_class
    from core.data.covidct import read_covidct
    from core.data.imaging import read_slice
    from core.runs.runfolder import RunFolder

    data = tmp_path / "data"
    shutil.copytree(phantom_root, data)
    test = first_of_each_class([s for s in read_covidct(data) if s.split == "test"], 4)
    dark = next(s for s in test if s.label == 0)
    img = read_slice(dark.path)
    img[lung_field(img).mask] = 0.0  # the lungs as a soft-tissue window shows them; the finder still finds them
    Image.fromarray(np.round(img * 255).astype(np.uint8)).save(dark.path)
    run = RunFolder(synthetic_run)
    scorer = GlobalScorer(run)
    res = audit(run, data, scorer, limit=4, progress=False, external_split="train")
    assert res["soft_tissue_window"] == [dark.key]
    kept = [s for s in test if s.key != dark.key and s.key not in res["no_lung_field"]]
    p = [scorer(read_slice(s.path), scorer.fields(read_slice(s.path))).probs["global"] for s in kept]
    assert res["branches"]["global"][LUNGS_READABLE]["auc"] == pytest.approx(roc_auc_score([s.label for s in kept], p))


def test_a_slice_file_that_cannot_be_read_is_said_not_a_traceback(tmp_path):
    from streamlit.testing.v1 import AppTest

    def page(path):
        from dashboard import ui

        ui.file_lungs_black_note(path)

    cases = ((tmp_path / "gone.png", "No such file"), (tmp_path / "broken.png", "broken.png: not a PNG, JPEG"))
    for path, said in cases:
        if path.name == "broken.png":
            path.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
        at = AppTest.from_function(page, args=(str(path),)).run()
        assert not at.exception and not at.warning
        (caption,) = [c.value for c in at.caption]
        assert caption.startswith("No check of the slice's display window: ") and said in caption


def test_the_data_page_filters_the_slices_whose_lungs_are_black(tmp_path, monkeypatch, synthetic_run, phantom_root):
    """The Data page's "lungs black only": of a source's slices, those shown in a soft-tissue window (measured as the
    Case view measures one file, lung_window.of_file); a file that cannot be read is not counted."""
    import os
    import shutil

    from core.data.catalogue import catalogue
    from core.runs.runfolder import RunFolder
    from dashboard import data_browser as db
    from tests.test_dashboard import app, no_exception

    files = {"soft": shown(SOFT_TISSUE), "lung": shown((-600.0, 1500.0)), "soft2": shown(SOFT_TISSUE, 2)}
    slices = []
    for key, img in files.items():
        (tmp_path / f"{key}.png").write_bytes(png_bytes(img))
        slices.append((key, str(tmp_path / f"{key}.png")))
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    slices.append(("broken", str(tmp_path / "broken.png")))
    assert db.black_lungs.__wrapped__(tuple(slices)) == ["soft", "soft2"]
    # the page, on a data root whose one COVID-CT slice is shown in a soft-tissue window
    data = tmp_path / "data"
    shutil.copytree(phantom_root, data, copy_function=os.link)
    cat, _ = catalogue(data)
    ct = cat[cat.source == "COVID-CT"]
    soft = ct.iloc[3]
    Path(soft.path).unlink()  # a hard link: the session's phantoms stay as they are
    Path(soft.path).write_bytes(png_bytes(shown(SOFT_TISSUE, 3)))
    runs = tmp_path / "runs"
    shutil.copytree(synthetic_run, runs / "black", copy_function=os.link)
    (runs / "black" / "config.json").unlink()  # a hard link: written anew
    (runs / "black" / "config.json").write_text(json.dumps({**RunFolder(synthetic_run).config, "data_root": str(data)}))
    monkeypatch.setenv("COVID_LAB_RUNS", str(runs))
    at = app("views/data.py", {"run_name": "black"})
    no_exception(at)
    assert f"**{len(ct)} slices**" in [m.value for m in at.markdown]
    at.checkbox(key="data_black").check().run()
    no_exception(at)
    assert f"**1 slice** (of {len(ct)} in COVID-CT)" in [m.value for m in at.markdown]
    assert [s.value for s in at.subheader][0] == f"`{soft.key}`"
