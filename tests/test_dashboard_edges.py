"""Edges of the dashboard a reviewer found crashing or misleading: a "Compare with" run that cannot be read, or has
no stored maps; a scan of one slice; a scan none of whose slices can be scored; a verdict's time zone said twice.
"""
from __future__ import annotations

import io
import math
import os
import re
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest

from tests.phantom_series import PhantomScan, dicom_series, nifti_bytes, right_lung_lesions
from tests.test_dashboard import no_exception, texts
from tests.test_imaging import dicom_bytes
from tests.test_two_step_pages import app

SCAN = "views/scan.py"


@pytest.fixture(scope="module")
def edge_runs(synthetic_run, module_scratch):
    """runs/a: the synthetic run (hard links: nothing is copied); runs/broken: its predictions name a two-step
    decision whose stage folder is missing (RunView.predictions raises RunError); runs/bare: its predictions and
    stages without the feature caches (no stored maps)."""
    root = module_scratch("dashboard-edges")
    shutil.copytree(synthetic_run, root / "a", copy_function=os.link)
    for name in ("broken", "bare"):
        shutil.copytree(synthetic_run, root / name, ignore=shutil.ignore_patterns("*.pt", "features"))
    pred = pd.read_csv(root / "broken" / "predictions.csv", keep_default_na=False)
    pred["p_two-step"] = 0.5
    pred.to_csv(root / "broken" / "predictions.csv", index=False)
    shutil.rmtree(root / "broken" / "two-step", ignore_errors=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("COVID_LAB_RUNS", str(root))
    mp.setenv("COVID_LAB_BOOT", "40")
    yield root
    mp.undo()


@pytest.mark.parametrize("page", ["views/overview.py", "views/map.py", "views/case.py", "views/margin.py"])
def test_a_comparison_run_that_cannot_be_read_is_said_and_the_page_goes_on(edge_runs, page):
    from core.runs.run_view import RunView
    from core.runs.runfolder import RunError

    with pytest.raises(RunError) as raised:
        _ = RunView(edge_runs, "broken").predictions
    at = app(page, {"run_name": "a", "compare_name": "broken"})
    (said,) = [w.value for w in at.warning if w.value.startswith("Compare with: run `broken` cannot be read")]
    assert str(raised.value) in said and said.endswith("this page shows `a` alone.")
    assert not [e.value for e in at.error if "Synthetic run" not in e.value]
    shown = " ".join(texts(at) + [s.value for s in at.subheader] + [c.value for c in at.caption])
    assert "Compared with" not in shown and "Beside broken" not in shown


def test_the_case_view_compares_a_run_without_stored_maps(edge_runs):
    from core.runs.run_view import RunView

    key = RunView(edge_runs, "a").predictions.key.iloc[0]
    at = app("views/case.py", {"run_name": "a", "compare_name": "bare", "selected_key": key})
    assert "Beside bare" in [s.value for s in at.subheader]
    assert [c for c in at.get("plotly_chart") if "compare_probs" in c.proto.id]  # the comparison goes on
    (note,) = [c.value for c in at.caption if c.value.startswith("bare · no stored maps of this slice: ")]
    assert "no cached 'fusion' features" in note
    captions = [c for el in at.image for c in el.captions]
    assert "a · attention map + tau box" in captions and not [c for c in captions if c.startswith("bare · ")]


# ---- the Scan page ---------------------------------------------------------------------------------------------
def upload(files):
    at = app(SCAN, {"run_name": "a"})
    at.file_uploader(key="scan_upload").set_value(files).run()
    no_exception(at)
    return at


def one_slice_uploads() -> dict[str, list]:
    scan = right_lung_lesions(1, size=96, seed=5)
    dcm = dicom_bytes(dicom_series(scan)[0])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("study/IM0001.dcm", dcm)
    return {"dicom": [("IM0001.dcm", dcm, "application/dicom")],
            "zip": [("one.zip", buf.getvalue(), "application/zip")],
            "nifti": [("one.nii", nifti_bytes(scan), "application/octet-stream")]}


@pytest.mark.parametrize("form", ["dicom", "zip", "nifti"])
def test_a_series_of_one_slice_shows_it_without_a_scroller(edge_runs, form):
    at = upload(one_slice_uploads()[form])
    (count,) = [t for t in texts(at) if "in the series, read from" in t]
    assert count.startswith("**1 slice** in the series, read from **1 file given**")
    assert not [s for s in at.slider if (s.key or "").startswith("scan_slice_")]
    assert any(t.startswith("**slice 0**") for t in texts(at))
    assert [m.value for m in at.metric if m.label == "Lesion in the lower third"] == ["n/a"]


def test_the_lower_third_needs_three_slice_positions_with_a_lung_field():
    """A one-slice scan with lesion is all "lower third" to core: neither the page nor the report says so."""
    from streamlit.testing.v1 import AppTest

    from core.knowledge.scan import summarise, with_zones
    from dashboard import scan_report

    def table(n: int) -> pd.DataFrame:  # n slices 5 mm apart, each with a lung field and lesion in its right lung
        rows = [{"index": i, "position_mm": 5.0 * i, "file": f"IM{i}", "problem": "", "p_fusion": 0.7,
                 "lung_found": True, "right_lung_px": 100.0, "left_lung_px": 100.0, "right_lesion_px": 10.0 * (i + 1),
                 "left_lesion_px": 0.0, "right_share": 0.1 * (i + 1), "left_share": 0.0} for i in range(n)]
        return with_zones(pd.DataFrame(rows), True)

    def page(t):
        import streamlit as st

        from core.knowledge.scan import summarise
        from dashboard import scans

        scans.burden(st.columns(3), summarise(t, None), t)

    for n, lower in ((1, "n/a"), (2, "n/a"), (3, None)):
        assert not math.isnan(summarise(table(n), None).zones["lower"])  # core gives a share
        at = AppTest.from_function(page, args=(table(n),)).run()
        assert not at.exception, [e.value for e in at.exception]
        shown = next(m.value for m in at.metric if m.label == "Lesion in the lower third")
        (caption,) = [c.value for c in at.caption]
        if lower:
            assert shown == lower and "no lower third: " in caption and "too few to split the scan in thirds" in caption
        else:
            assert shown.endswith("%") and "no lower third" not in caption

    bars = []
    real = scan_report._bar
    t = table(1)
    try:
        scan_report._bar = lambda d, x0, y, w, share, colour, label: bars.append((label, share)) or real(
            d, x0, y, w, share, colour, label)
        scan_report.scan_report(t, summarise(t, "fusion", 0.5), "scan", "run", ["fusion"], [], [], "notice")
    finally:
        scan_report._bar = real
    thirds = [s for label, s in bars if label.endswith(" third")]
    assert len(thirds) == 3 and all(math.isnan(s) for s in thirds)


def test_a_series_no_slice_of_which_can_be_scored_says_why(edge_runs):
    tiny = PhantomScan([np.full((12, 12), -700.0)] * 5, [np.zeros((12, 12), bool)] * 5)
    at = upload([("small.nii", nifti_bytes(tiny), "application/octet-stream")])
    errors = [e.value for e in at.error if "Synthetic run" not in e.value]
    assert len(errors) == 1 and errors[0].startswith("No slice of the series could be scored: ")
    assert "12x12 pixels" in errors[0]
    assert not at.get("plotly_chart") and not [m for m in at.metric if m.label == "Scan decision"]
    shown = " ".join(texts(at) + [w.value for w in at.warning] + [c.value for c in at.caption])
    assert "lung field" not in shown  # nothing was looked at: no claim about lungs
    assert next(e for e in at.expander if e.label == "Every slice (5 rows)")


# ---- verdicts --------------------------------------------------------------------------------------------------
def test_a_verdicts_time_says_its_zone_once(tmp_path):
    from core.runs.verdicts import VERDICTS, VerdictStore
    from dashboard.report_ui import latest_verdict
    from dashboard.verdicts_ui import at_text, describe

    store = VerdictStore.in_runs(tmp_path)
    store.save("run", "k", VERDICTS[0], "", "Dr A")
    v = store.latest("run")["k"]
    assert v["at"].endswith("+00:00")
    for line in (describe(v), latest_verdict(tmp_path, "run", "k")):
        assert line.count("UTC") == 1 and "+00:00" not in line, line
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", line), line
    assert at_text("2025-01-02T06:56:06+02:00") == "2025-01-02 04:56:06 UTC"
    assert at_text("not a time") == "not a time"  # shown as stored
