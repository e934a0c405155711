"""The lung-window audit (core/audits/windows.py, `train windows`): COVID-CT-MD's reported patients shown through other
lung windows and scored through the run; its table on the "Does it look at the disease?" page and in the report.

A copy of the session's default-recipe run (`guided_run`: its two-step decision fitted, external.json written).
Expected numbers come from the run's files (external.json, windows.csv), not from the helpers under test."""
from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.audits import external as ex
from core.audits import windows as wa
from core.data.imaging import CT_STORED_OFFSET, LUNG_WINDOW, dicom_dataset, dicom_frame, dicom_hu, slice_hu, window
from core.results.window_tables import window_sentence, window_table
from core.runs.runfolder import RunFolder
from tests.test_imaging import chest_hu, ct_dataset, dicom_bytes, picture_dicom


@pytest.fixture(scope="module")
def windowed(guided_run, phantom_root, module_scratch):
    mp = pytest.MonkeyPatch()
    mp.setattr(ex, "N_BOOT", 50)  # speed: the AUCs' intervals
    root = module_scratch("windows")
    shutil.copytree(guided_run, root / "two-step")
    result = wa.write_windows(RunFolder(root / "two-step"), phantom_root)
    mp.setenv("COVID_LAB_RUNS", str(root))
    mp.setenv("COVID_LAB_BOOT", "40")
    yield root, result
    mp.undo()


def test_a_dicom_slice_can_be_shown_in_another_window():
    hu = chest_hu()
    ds = dicom_dataset("ct.dcm", dicom_bytes(ct_dataset(hu, slope=1.0)))
    np.testing.assert_allclose(dicom_frame("ct.dcm", ds), window(hu, *LUNG_WINDOW), atol=1e-6)
    np.testing.assert_allclose(dicom_frame("ct.dcm", ds, None, (-500.0, 2000.0)), window(hu, -500.0, 2000.0),
                               atol=1e-6)
    np.testing.assert_allclose(dicom_hu("ct.dcm", ds), hu, atol=1e-3)  # the numbers themselves
    picture = dicom_dataset("key.dcm", dicom_bytes(picture_dicom(np.zeros((32, 32), np.uint8))))
    assert dicom_hu("key.dcm", picture) is None  # a picture of a slice: no window can be made of it


def test_the_products_window_gives_the_external_reports_aucs(windowed):
    """Same slices, same run, same window: the audit's first row is external.json's record on those patients."""
    root, result = windowed
    external = json.loads((root / "two-step" / ex.EXTERNAL_FILE).read_text())["comparisons"]
    first = result["windows"][0]
    assert first["product"] and (first["level"], first["width"]) == LUNG_WINDOW
    assert set(first["comparisons"]) == {"normal", "pneumonia"}
    assert [w["window"] for w in result["windows"]] == [wa.window_name(*w) for w in wa.WINDOWS]
    assert result["decision"] == "two-step" and {"two-step", "lesion-share", "fusion"} <= set(result["branches"])
    for against, m in first["comparisons"].items():
        record = external[f"covid-ct-md {m['vs']}"]["branches"]
        for branch, auc in m["branches"].items():
            assert auc["auc"] == pytest.approx(record[branch]["auc"], abs=1e-9), (against, branch)


def test_the_products_window_gives_the_external_reports_scan_statistics(windowed):
    root, result = windowed
    external = json.loads((root / "two-step" / ex.EXTERNAL_FILE).read_text())
    product = result["windows"][0]["patients"]
    assert set(product) == {"P002", "normal002", "cap002"}
    for patient, m in product.items():
        want = external["patients"][patient]
        assert m["label"] == want["label"]
        for branch, stat in m["scan_statistic"].items():
            assert stat == pytest.approx(want["scan_statistic"][branch], abs=1e-9), (patient, branch)
            assert m["right"][branch] == (want["scan_covid"][branch] == bool(want["label"]))
    assert result["thresholds"] == pytest.approx(external["thresholds"]) and result["rule"] == external["rule"]


def test_every_window_rescored_every_reported_slice(windowed, phantom_root):
    root, result = windowed
    rows = pd.read_csv(root / "two-step" / wa.ROWS_FILE)
    reported = wa.reported_slices(phantom_root)
    assert {s.group for s in reported} == {"P002", "normal002", "cap002"}
    assert len(rows) == len(reported) * len(wa.WINDOWS)
    assert rows.groupby("window").key.nunique().eq(len(reported)).all()
    product = rows[rows.window == wa.window_name(*LUNG_WINDOW)].set_index("key")
    wide = rows[rows.window == "L-500/W2000"].set_index("key").loc[product.index]
    assert not np.allclose(product["p_fusion"], wide["p_fusion"])  # another window is another image to the run
    for w in result["windows"]:
        n = w["comparisons"]["normal"]
        assert n["n_neg"] == sum(s.group == "normal002" for s in reported)
        assert n["n_pos"] == sum(s.group == "P002" and s.infection_visible == 1 for s in reported)


def test_the_spread_and_the_sentence():
    entry = lambda name, product, auc: {"window": name, "product": product, "comparisons": {
        "normal": {"branches": {"two-step": {"auc": auc, "auc_ci": [auc - 0.05, auc + 0.01]},
                                "lesion-share": {"auc": 0.9, "auc_ci": [0.85, 0.95]}}}}}
    result = {"windows": [entry("L-600/W1500", True, 0.97), entry("A", False, 0.93), entry("B", False, 0.95)]}
    assert wa.spread(result, "two-step", "normal") == (0.97, 0.93, 0.95)
    assert wa.spread(result, "two-step", "pneumonia") is None and wa.spread({}, "two-step", "normal") is None
    assert window_sentence(result, "two-step") == ("Shown in 2 other lung windows, **two-step** scores AUC 0.930 to "
                                                   "0.950 against the normal patient's slices (0.970 in the product's "
                                                   "window).")
    table = window_table(result, "two-step")
    assert list(table.columns) == ["lung window", "two-step, infected vs normal", "lesion-share, infected vs normal",
                                   "two-step, infected vs pneumonia", "lesion-share, infected vs pneumonia",
                                   "two-step, scan calls right"]
    assert table.iloc[0].tolist()[:3] == ["L-600/W1500 (the product's)", "0.970 [0.920, 0.980]", "0.900 [0.850, 0.950]"]
    assert table.iloc[1, 3] == "" and table.iloc[0, 5] == ""  # not measured against pneumonia; no scan calls
    calls = lambda right: {"P002": {"right": {"two-step": True}}, "normal002": {"right": {"two-step": right}}}
    for w, right in zip(result["windows"], (True, True, False)):
        w["patients"] = calls(right)
    assert window_sentence(result, "two-step").endswith("window). Its scan calls are not all right in B (1 of 2).")
    assert list(window_table(result, "two-step")["two-step, scan calls right"]) == ["2 of 2", "2 of 2", "1 of 2"]
    result["windows"][2]["patients"] = calls(True)
    assert window_sentence(result, "two-step").endswith(" Its scan calls are right in every window (2 of 2 patients).")


def test_slices_without_ct_numbers_say_why(guided_run, phantom_root, tmp_path):
    """A data pack keeps COVID-CT-MD windowed (8-bit): no other window can be made from it; the file says so."""
    root = tmp_path / "data"
    shutil.copytree(phantom_root, root)
    first = wa.reported_slices(root)[0]
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(first.path, format="PNG")  # the listed name, PNG inside
    run = tmp_path / "run"
    shutil.copytree(guided_run, run)
    result = wa.write_windows(RunFolder(run), root)
    assert result == {"unavailable": f"{first.path} holds no CT numbers (not DICOM: a data pack keeps COVID-CT-MD "
                                     "windowed); run on the raw data root"}
    assert json.loads((run / wa.WINDOWS_FILE).read_text()) == result and not (run / wa.ROWS_FILE).exists()


def test_the_command_writes_both_files(windowed, phantom_root, tmp_path, train_cli, monkeypatch):
    root, _ = windowed
    monkeypatch.setattr(wa, "WINDOWS", wa.WINDOWS[:2])  # speed: the product's and one other
    run = tmp_path / "copy"
    shutil.copytree(root / "two-step", run)
    for f in (wa.WINDOWS_FILE, wa.ROWS_FILE):
        (run / f).unlink()
    p = train_cli("windows", "--run", run, "--data-root", phantom_root, "--no-progress")
    assert p.returncode == 0, p.stderr
    printed = json.loads(p.stdout.strip().splitlines()[-1])
    assert [w["window"] for w in printed["windows"]] == ["L-600/W1500", "L-600/W1200"]
    assert json.loads((run / wa.WINDOWS_FILE).read_text())["windows"][1]["window"] == "L-600/W1200"
    assert set(pd.read_csv(run / wa.ROWS_FILE).window) == {"L-600/W1500", "L-600/W1200"}


def test_the_disease_page_and_the_report_show_the_windows(windowed):
    from train.report import other_hospitals
    from tests.test_two_step_pages import app

    root, result = windowed
    at = app("views/disease.py", {"run_name": "two-step"})
    text = " ".join(m.value for m in at.markdown)
    assert "**In other lung windows**" in text and window_sentence(result, "two-step") in text
    (table,) = [d.value for d in at.dataframe if "lung window" in d.value.columns]
    assert list(table["lung window"]) == [w["window"] + (" (the product's)" if w["product"] else "")
                                          for w in result["windows"]]
    for row, w in zip(table.to_dict("records"), result["windows"]):
        m = w["comparisons"]["pneumonia"]["branches"]["two-step"]
        assert row["two-step, infected vs pneumonia"] == f"{m['auc']:.3f} [{m['auc_ci'][0]:.3f}, {m['auc_ci'][1]:.3f}]"
    report = other_hospitals(RunFolder(root / "two-step"))
    assert "In other lung windows (`windows.json`" in report and "| L-500/W2000 |" in report


def test_a_scans_call_carries_the_windows_record(windowed, phantom_root, train_cli):
    """`predict` on a series: under the scan's call, the run's record on another hospital goes on to the lowest
    AUC in the other lung windows, as windows.json holds it."""
    from core.trust.scan_call import window_lows

    root, result = windowed
    folder = wa.reported_slices(phantom_root)[0].path.rsplit("/", 1)[0]
    p = train_cli("predict", "--run", root / "two-step", folder)
    assert p.returncode == 0, p.stderr
    scan = next(json.loads(line)["scan"] for line in p.stdout.splitlines() if '"scan"' in line)
    lows = window_lows(result, "two-step")
    assert [w.against for w in lows] == ["normal", "pneumonia"]
    record = scan["trust"]["lines"][2]
    assert f"those slice AUCs stay at or above {lows[0].low:.3f} against normal slices" in record


def test_one_slice_in_every_window(windowed, phantom_root):
    """A DICOM slice's call in each lung window (New slice): the product's window gives the slice as read."""
    from core.data.imaging import read_slice_bytes
    from core.inference import TrainedRun

    root, _ = windowed
    tr = TrainedRun.load(root / "two-step")
    data = open(wa.reported_slices(phantom_root)[0].path, "rb").read()
    calls = wa.slice_in_windows(tr, data, "IM0001", "two-step", 0.5)
    assert [c.window for c in calls] == [wa.window_name(*w) for w in wa.WINDOWS]
    assert [c.product for c in calls] == [True] + [False] * (len(wa.WINDOWS) - 1)
    assert calls[0].p == pytest.approx(tr.analyse(read_slice_bytes(data, "IM0001")).probs["two-step"], abs=1e-9)
    assert all(c.covid == (c.p >= 0.5) for c in calls)
    exported = ct_png(data)  # the same slice as a 16-bit PNG of stored CT numbers: the same calls
    again = wa.slice_in_windows(tr, exported, "IM0001.png", "two-step", 0.5)
    assert [c.window for c in again] == [c.window for c in calls]
    assert [c.p for c in again] == pytest.approx([c.p for c in calls], abs=1e-6)
    png = io.BytesIO()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(png, format="PNG")
    assert wa.slice_in_windows(tr, png.getvalue(), "a.png", "two-step", 0.5) is None  # no CT numbers
    key_image = dicom_bytes(picture_dicom(np.zeros((32, 32), np.uint8)))
    assert wa.slice_in_windows(tr, key_image, "key.dcm", "two-step", 0.5) is None


def ct_png(dicom: bytes) -> bytes:
    """A DICOM CT slice exported as a 16-bit PNG of its stored CT numbers (HU + 1024), as some hospitals send them."""
    hu = slice_hu(dicom, "IM0001")
    out = io.BytesIO()
    Image.fromarray((hu + CT_STORED_OFFSET).astype(np.uint16)).save(out, format="PNG")
    return out.getvalue()


def test_the_calls_in_words():
    same = [wa.WindowCall("L-600/W1500", True, 0.7, True), wa.WindowCall("A", False, 0.65, True)]
    assert wa.calls_text(same, "two-step") == ("Shown in the 2 lung windows, **two-step**'s p(COVID) runs from 0.650 "
                                               "to 0.700: the call, COVID, is the same in every one.")
    turned = same + [wa.WindowCall("B", False, 0.4, False)]
    assert wa.calls_text(turned, "two-step").endswith("the call (COVID in the product's window) changes in 1 of 3: it "
                                                      "rests on how the slice is shown, so read it as uncertain.")
    table = wa.calls_table(turned)
    assert table.to_dict("records")[0] == {"lung window": "L-600/W1500 (the product's)", "p(COVID)": 0.7,
                                           "call": "COVID"}
    assert list(table.call) == ["COVID", "COVID", "non-COVID"]


def test_predict_windows_gives_a_lone_slices_call_in_each(windowed, phantom_root, tmp_path, train_cli):
    root, _ = windowed
    dicom = wa.reported_slices(phantom_root)[0].path
    png = tmp_path / "slice.png"
    Image.fromarray(np.full((64, 64), 90, np.uint8)).save(png)
    exported = tmp_path / "exported.png"
    exported.write_bytes(ct_png(open(dicom, "rb").read()))
    p = train_cli("predict", "--run", root / "two-step", "--windows", dicom, png, exported)
    assert p.returncode == 0, p.stderr
    first, second, third = (json.loads(line) for line in p.stdout.splitlines())
    # a 16-bit PNG of CT numbers holds HU too
    assert [(w["window"], w["call"]) for w in third["windows"]] == [(w["window"], w["call"]) for w in first["windows"]]
    assert [w["p"] for w in third["windows"]] == pytest.approx([w["p"] for w in first["windows"]], abs=1e-5)
    assert [w["window"] for w in first["windows"]] == [wa.window_name(*w) for w in wa.WINDOWS]
    assert first["windows"][0]["p"] == pytest.approx(first["decision"]["p"], abs=1e-6)  # the product's window
    assert first["windows_call_holds"] == (len({w["call"] for w in first["windows"]}) == 1)
    assert second["windows"] is None and second["windows_call_holds"] is None  # a PNG holds no HU
    plain = train_cli("predict", "--run", root / "two-step", dicom)
    assert "windows" not in json.loads(plain.stdout.splitlines()[0])  # only when asked: five analyses a slice


def test_new_slice_shows_an_upload_of_ct_numbers_in_other_windows(windowed, phantom_root):
    from tests.test_two_step_pages import app

    root, _ = windowed
    data = open(wa.reported_slices(phantom_root)[0].path, "rb").read()
    at = app("views/new_slice.py", {"run_name": "two-step"})
    at.file_uploader(key="upload").set_value(("IM0001", data, "application/dicom")).run()
    assert not at.exception and at.toggle(key="upload_windows").value is False
    at.toggle(key="upload_windows").set_value(True).run()
    assert not at.exception
    (line,) = [m.value for m in at.markdown if m.value.startswith("Shown in the 5 lung windows, **two-step**")]
    (table,) = [d.value for d in at.dataframe if "lung window" in d.value.columns]
    assert len(table) == len(wa.WINDOWS) and table["lung window"].iloc[0] == "L-600/W1500 (the product's)"
    p = table["p(COVID)"]
    assert f"runs from {p.min():.3f} to {p.max():.3f}" in line
    png = io.BytesIO()
    Image.fromarray(np.full((64, 64), 90, np.uint8)).save(png, format="PNG")
    at.file_uploader(key="upload").set_value(("slice.png", png.getvalue(), "image/png")).run()
    assert not [t for t in at.toggle if t.key == "upload_windows"]  # an 8-bit PNG holds no HU: nothing to offer
    at.file_uploader(key="upload").set_value(("exported.png", ct_png(data), "image/png")).run()
    at.toggle(key="upload_windows").set_value(True).run()  # a 16-bit PNG of CT numbers: offered, the same calls
    assert not at.exception
    (again,) = [d.value for d in at.dataframe if "lung window" in d.value.columns]
    np.testing.assert_allclose(again["p(COVID)"], table["p(COVID)"], atol=1e-3)


def test_without_the_audit_the_page_names_the_command(guided_run, module_scratch, monkeypatch):
    from tests.test_two_step_pages import app

    root = module_scratch("windows-none")
    shutil.copytree(guided_run, root / "unwindowed")
    (root / "unwindowed" / wa.WINDOWS_FILE).unlink(missing_ok=True)
    monkeypatch.setenv("COVID_LAB_RUNS", str(root))
    at = app("views/disease.py", {"run_name": "unwindowed"})
    assert any(c.value.startswith("In other lung windows: not measured yet. `python -m train windows --run ")
               for c in at.caption)
