"""The Case view's report downloads: one 16:9 slide (PNG, PDF) of the slice at the tau on the slider.

The page's cached images are gathered while the page runs; re-scoring at tau, the composition
(dashboard.case_report) and the encoding run only when a button is clicked (Streamlit's deferred
download data), so moving the slider stays as fast as before.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

import streamlit as st

from core.pictures import slice_images
from dashboard import data, data_browser, ui
from dashboard.case_report import case_report, to_pdf, to_png
from dashboard.map_args import CLASS_NAMES


def _label(v) -> str:
    return CLASS_NAMES[int(v)]


def latest_verdict(runs: str, run: str, key: str) -> str | None:
    """The reviewer's verdict in force for the slice, as one line; None when there is none or the
    verdict file cannot be read (the report then says no verdict was recorded)."""
    from core.runs.verdicts import VerdictStore, VerdictStoreError
    from dashboard.verdicts_ui import at_text

    try:
        v = VerdictStore.in_runs(runs).latest(run).get(key)
    except VerdictStoreError:
        return None
    if not v:
        return None
    who = "pre-flagged by train audit" if v.get("source") == "audit" else f"by {v.get('reviewer')}"
    note = f" · {v['note']}" if v.get("note") else ""
    return f"{v['verdict']} ({who}, {at_text(v.get('at', ''))}){note}"


def _gather(ctx, key: str):
    """The slice's row and the page's cached images (on the page's thread: st.cache_data)."""
    try:
        sides = ctx.rv.side_boxes(key)
    except (FileNotFoundError, ValueError):  # no lesion cache: the crops' panels say so
        sides = {}
    return ctx.df.set_index("key").loc[key], data.case_images(ctx.runs, ctx.name, ctx.stamp, key), sides


def compose(ctx, key, row, imgs, sides, stored, tau, tr=None, a=None, verdict=None):
    """The report image. tr, a (the trained run, the slice's SliceAnalysis) give the crop at `tau`
    and the re-scored probabilities; without them those panels are noted as missing and the
    probabilities are the stored ones. verdict: a string, or a callable returning one (read late).
    Runs off the page's thread when a button is clicked: no Streamlit calls in here."""
    probs, reference, tau_imgs = dict(stored), None, {}
    if tr is not None and a is not None:
        tau_imgs = slice_images.tau_images(a, tau)  # the box and crop depend on the attention map only
        if abs(tau - ctx.tau) > 1e-6:  # the stored probabilities are at the run's tau: re-score
            live = data.rescore(tr, a, tau)[0].probs
            probs.update({b: float(live[b]) for b in tr.tau_changes() if b in live and b in probs})
            reference = stored
    why = "" if tau_imgs else " - no live analysis for this run"
    panels = [
        (imgs.get("lung_field") or imgs.get("slice"),
         "slice as the run sees it" + (", lung field outlined" if "lung_field" in imgs else "")),
        (tau_imgs.get("attention"), f"attention map ({ctx.cam_method}), crop box at tau {tau:.2f}{why}"),
        (tau_imgs.get("crop"), f"heatmap-branch crop at tau {tau:.2f}{why}"),
        (imgs.get("lesion"), "infected regions (p > 0.5), lesion boxes red"),
    ]
    for side, name, where in (("right_lung", "right-lung crop", "image left"),
                              ("left_lung", "left-lung crop", "image right")):
        present = sides.get(side) is not None  # else case_images holds a placeholder tile, unreadable on a slide
        panels.append((imgs.get(side), f"{name} ({where})") if present else (None, f"{name} (no lesion there)"))
    panels.append((imgs.get("fusion_cam"), f"fusion CAM (at the run's tau {ctx.tau:.2f})"))
    decision = ctx.rv.decision_branch()
    thresholds = ctx.rv.thresholds
    prediction = _label(probs[decision] >= thresholds[decision]) if decision in probs else _label(row.pred)
    signs = data_browser.row_signs(row)
    subtitle = ("synthetic phantoms · " if ctx.rv.synthetic else "") + \
        datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return case_report(panels, probs, decision, thresholds, _label(row.label), prediction,
                       verdict() if callable(verdict) else verdict, ctx.name, key, tau, ui.RESEARCH_NOTICE,
                       reference=reference, run_tau=ctx.tau, subtitle=subtitle,
                       signs="" if signs is None else data_browser.signs_line(signs))


def report_buttons(ctx, key: str, stored: dict, tau: float, tr=None, a=None) -> None:
    """Two download buttons (PNG, PDF) for the report at `tau`; the slice's verdict in force
    (core.runs.verdicts) is read when one is clicked."""
    row, imgs, sides = _gather(ctx, key)
    runs, name = ctx.runs, ctx.name
    verdict = lambda: latest_verdict(runs, name, key)  # noqa: E731 (read at click time)
    memo = {}

    def image():  # one composition for both buttons
        if "img" not in memo:
            memo["img"] = compose(ctx, key, row, imgs, sides, dict(stored), float(tau), tr, a, verdict)
        return memo["img"]

    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"case-report_{ctx.name}_{key}_tau{tau:.2f}").strip("_")
    c1, c2, c3 = st.columns([1, 1, 2.2])
    c1.download_button("Download case report (PNG)", lambda: to_png(image()), f"{stem}.png", "image/png",
                       key="case_report_png", on_click="ignore", icon=":material/download:")
    c2.download_button("Download case report (PDF)", lambda: to_pdf(image()), f"{stem}.pdf", "application/pdf",
                       key="case_report_pdf", on_click="ignore", icon=":material/download:")
    c3.caption(f"One 16:9 slide: the slice, its maps at tau {tau:.2f}, every branch's probability, "
               "the verdict, the radiological signs and the research-use notice.")
