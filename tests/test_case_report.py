"""The one-slide case report (dashboard.case_report) and the Case view's download buttons.

Pixel checks use the module's own colours (BAR_COLOURS, FOOTER) and only the regions its
docstring names (header band on top, footer band at the bottom), not exact coordinates.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_dashboard import app, no_exception

from dashboard.case_report import BAR_COLOURS, SIZE, case_report, to_pdf, to_png

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NOTICE = "Research use only — not for clinical diagnosis."
PROBS = {"global": 0.2, "heatmap": 0.45, "global+heatmap": 0.8, "fusion": 1.0}


def report(panels=(), probs=PROBS, verdict=None, **kw):
    return case_report(list(panels), probs, "fusion", 0.5, "COVID", "COVID", verdict, "tiny", "covidct/COVID/a.png",
                       0.6, NOTICE, **kw)


def ink(a: np.ndarray) -> np.ndarray:
    """Pixels dark enough to be text on the light bands."""
    return (a < 90).all(-1)


def test_a_16_9_rgb_image_with_legible_text():
    img = report([(np.random.default_rng(0).random((224, 224)), "slice")])
    assert img.size == SIZE == (1920, 1080) and img.mode == "RGB"
    a = np.asarray(img)
    rows = np.nonzero(ink(a[:70]).any(1))[0]  # the title line of the header
    assert rows.size and rows.max() - rows.min() >= 30  # 44 px type: capitals and descenders span > 30 px
    assert ink(a[70:135]).sum() > 3000  # the truth / prediction line
    footer = a[-90:]
    assert ((footer > 235).all(-1)).sum() > 3000  # the notice, white on the footer band


def test_bar_lengths_are_proportional_to_p():
    a = np.asarray(report())  # no panels: the bars are the only pixels of their colours
    lengths = []
    for colour in BAR_COLOURS.values():
        hit = (a == np.array(colour)).all(-1)
        rows = np.nonzero(hit.any(1))[0]
        # Contiguous rows of one colour are one bar; its length is its horizontal extent.
        for band in np.split(rows, np.nonzero(np.diff(rows) > 1)[0] + 1):
            if band.size >= 10:
                xs = np.nonzero(hit[band].any(0))[0]
                lengths.append((band[0], xs.max() - xs.min() + 1))
    lengths = [n for _, n in sorted(lengths)]  # top to bottom: the order of PROBS
    assert len(lengths) == len(PROBS)
    scale = lengths[-1] / 1.0
    assert scale > 300  # a bar a slide's audience can compare
    for n, p in zip(lengths, PROBS.values()):
        assert n == pytest.approx(p * scale, abs=3)


def test_png_and_pdf_bytes():
    img = report()
    png, pdf = to_png(img), to_pdf(img)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and pdf[:5] == b"%PDF-"
    assert Image.open(io.BytesIO(png)).size == SIZE
    box = re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)
    assert box and (float(box[1]), float(box[2])) == (960, 540)  # points: 13.33 x 7.5 in, a 16:9 slide


def test_missing_or_broken_panels_are_noted_not_fatal():
    good = [(np.full((64, 64), 0.5), "slice")]
    full = np.asarray(report(good))
    partial = np.asarray(report(good + [(None, "fusion CAM: not in this run"), (b"not an image", "lesion overlay")]))
    assert partial.shape == full.shape
    note = (partial != full).any(-1)[800:900]  # only the note under the images differs
    assert note.sum() > 500
    assert ((partial != full).any(-1)[:800] == 0).all()


def test_verdict_line():
    none, some = np.asarray(report()), np.asarray(report(verdict="attention on the lesions (by Dr A)"))
    diff = np.nonzero((none != some).any(-1).any(1))[0]
    assert diff.size and 880 < diff.min() and diff.max() < 975  # one line, above the footer band


def test_signs_line_under_the_verdict():
    """The slice's signs (dashboard.data_browser.signs_line) in one or two lines between the verdict and the
    footer band; nothing else on the slide moves."""
    from dashboard.data_browser import signs_line

    signs = signs_line({"lesion_share": 0.12, "right_share": 0.1, "left_share": 0.14, "bilateral": 1.0,
                        "peripheral_share": 0.8, "lesion_count": 3, "consolidation_share": 0.2, "lower_zone": None})
    assert signs.startswith("lesion share (both lungs) 12.0% · ") and "lower zone" not in signs
    none, some = np.asarray(report(verdict="seen")), np.asarray(report(verdict="seen", signs=signs))
    diff = np.nonzero((none != some).any(-1).any(1))[0]
    assert diff.size and 915 < diff.min() and diff.max() < 975
    assert ink(some[diff.min():diff.max() + 1]).sum() > 3000  # legible text, not a stray pixel


def test_latest_verdict_reads_the_store(tmp_path):
    from core.runs.verdicts import VERDICTS, VerdictStore
    from dashboard.report_ui import latest_verdict

    assert latest_verdict(tmp_path, "run", "k") is None
    VerdictStore.in_runs(tmp_path).save("run", "k", VERDICTS[0], "looks fine", "Dr A")
    assert latest_verdict(tmp_path, "run", "k").startswith(f"{VERDICTS[0]} (by Dr A, ")
    (tmp_path / "verdicts.sqlite").write_bytes(b"not a database" * 100)
    assert latest_verdict(tmp_path, "run", "k") is None  # unreadable: the report says none, it does not fail


def test_case_page_downloads_the_report(dash_env, rv, monkeypatch):
    from streamlit.delta_generator import DeltaGenerator

    # AppTest does not hand back a download's bytes: keep what the page passed (in columns, so on the class).
    seen = {}
    real = DeltaGenerator.download_button

    def spy(self, label, data, file_name=None, mime=None, **kw):
        seen[label] = (data, file_name, mime)
        return real(self, label, data, file_name, mime, **kw)

    monkeypatch.setattr(DeltaGenerator, "download_button", spy)
    # The COVID slice with the most lung crops (test split first), so the artifact shows every panel it can.
    df = rv.predictions.sort_values("split", key=lambda s: s != "test", kind="stable")
    key = max(df[df.label == 1].key, key=lambda k: sum(b is not None for b in rv.side_boxes(k).values()))
    at = app("views/case.py", {"selected_key": key})
    no_exception(at)
    labels = [b.label for b in at.get("download_button")]
    assert "Download case report (PNG)" in labels and "Download case report (PDF)" in labels
    at.slider(key="tau").set_value(0.5).run()  # the report follows the slider
    no_exception(at)
    make_png, name, mime = seen["Download case report (PNG)"]
    assert mime == "image/png" and name.endswith("_tau0.50.png")
    png = make_png()  # deferred: built when clicked
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(io.BytesIO(png)).size == SIZE
    assert seen["Download case report (PDF)"][0]()[:5] == b"%PDF-"
    out = PROJECT_ROOT / "test-artifacts" / "case-report.png"
    out.parent.mkdir(exist_ok=True)
    out.write_bytes(png)


def test_a_partial_run_still_gets_a_report():
    """No trained models (no live analysis at tau) and no lesion or CAM caches: the stored slice and
    probabilities, the rest named as not shown."""
    from types import SimpleNamespace

    from dashboard.report_ui import compose

    rv = SimpleNamespace(decision_branch=lambda: "fusion", thresholds=dict.fromkeys(PROBS, 0.5), synthetic=False)
    ctx = SimpleNamespace(rv=rv, tau=0.75, cam_method="eq1", name="partial")
    slice_only = {"slice": to_png(Image.new("RGB", (64, 64), (90, 90, 90)))}
    a = np.asarray(compose(ctx, "k", SimpleNamespace(label=1, pred=1), slice_only, {}, PROBS, 0.6))
    assert a.shape == (SIZE[1], SIZE[0], 3)
    assert (a == (90, 90, 90)).all(-1).sum() > 200 ** 2  # the slice, scaled up to its tile
    assert (a[850:895, :1180] < 200).all(-1).sum() > 500  # the "Not shown: ..." note
