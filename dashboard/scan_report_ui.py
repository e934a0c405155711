"""The Scan page's report downloads: one 16:9 slide (PNG, PDF) of the whole scan (dashboard.scan_report).

As the Case view's report (dashboard.report_ui): the composition runs only when a button is clicked
(Streamlit's deferred download data), off the page's thread, so it makes no Streamlit call; it analyses
the slices that drive the decision then (the page scored them, it drew no maps of them).
"""
from __future__ import annotations

import math
import re
from datetime import UTC, datetime

import streamlit as st

from core.inputs.harmonise import from_frame
from core.pictures import images as im
from core.results.predictions import BASELINES
from dashboard import scan_images, scans, ui
from dashboard.case_report import to_pdf, to_png
from dashboard.data import MODEL_LOCK
from dashboard.scan_report import scan_report

PANELS = 6  # the slices that drive the decision, at most, on the slide


def _panels(tr, volume, table, summary) -> list[tuple[bytes, str]]:
    rows = table.set_index("index")
    out = []
    for i in summary.decision.top[:PANELS]:
        img = volume.image(i)
        with MODEL_LOCK:
            a = tr.analyse(img)
        lesion = from_frame(a.lesion_prob, a.frame, *img.shape)
        r = rows.loc[i]
        where = "" if math.isnan(r.position_mm) else f"\n{r.position_mm:g} mm"
        out.append((im.to_png(im.lesion_overlay(img, lesion, size=scan_images.THUMB)),
                    f"slice {i}{where}\np {r[f'p_{summary.decision.branch}']:.3f}\nlesions red"))
    return out


def report_buttons(ctx, scan: scans.ScanInput, volume, table, summary, notes: list[str], branches: list[str],
                   trust: str = "") -> None:
    """Two download buttons (PNG, PDF) for the scan's report (`trust`: how far the call can be trusted, one line)."""
    tr = ctx.trained()
    memo = {}

    def image():  # one composition for both buttons
        if "img" not in memo:
            subtitle = ("synthetic phantoms · " if ctx.rv.synthetic else "") + \
                datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
            memo["img"] = scan_report(table, summary, scan.name, ctx.name, [b for b in branches if b not in BASELINES],
                                      _panels(tr, volume, table, summary),
                                      notes, ui.RESEARCH_NOTICE, truth=scan.truth, subtitle=subtitle, trust=trust)
        return memo["img"]

    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"scan-report_{ctx.name}_{scan.name}").strip("_")[:120]
    c1, c2, c3 = st.columns([1, 1, 2.2])
    c1.download_button("Download scan report (PNG)", lambda: to_png(image()), f"{stem}.png", "image/png",
                       key="scan_report_png", on_click="ignore", icon=":material/download:")
    c2.download_button("Download scan report (PDF)", lambda: to_pdf(image()), f"{stem}.pdf", "application/pdf",
                       key="scan_report_pdf", on_click="ignore", icon=":material/download:")
    c3.caption("One 16:9 slide: the scan's decision, its rule and how far it can be trusted, p(COVID) and the "
               "lesion share along the scan, the opacity per lung, the slices that drive the decision, the series' "
               "problems and the research-use notice.")
