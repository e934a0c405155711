"""A one-slide report of a whole scan: the scan-level decision and its rule, how far it can be trusted, where
along the scan the disease lies (z-profile), the percent of opacity per lung, the slices that drive the decision.

Pillow only, on the case report's 16:9 canvas and type (dashboard.case_report: no text under 24 px at
1920x1080). Inputs are the scan's table and summary (core.knowledge.scan) and plain images, so the
dashboard and scripts can build one without a page.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from core.knowledge.scan import SIDES, ZONES, ScanSummary
from dashboard.case_report import BAR_COLOURS, FOOTER, GREY, INK, MARGIN, PAPER, SIZE, WRONG, _as_image, _text, _wrap

LINE_COLOURS = ((76, 120, 168), (245, 133, 24), (84, 162, 75), (178, 121, 162), (157, 117, 93), (114, 183, 178))
SIDE_COLOURS = {"right": (80, 160, 230), "left": (90, 190, 110)}  # the lung crops' blue and green
AXIS = (200, 200, 208)


def _x_of(table: pd.DataFrame) -> tuple[np.ndarray, str]:
    """Where each slice sits along the scan: its position (mm, foot to head) when every slice has one."""
    if len(table) and table.position_mm.notna().all():
        return table.position_mm.to_numpy(float), "position along the scan (mm, foot to head)"
    return table["index"].to_numpy(float), "slice (body order)"


def _line_panel(d: ImageDraw.ImageDraw, box, x: np.ndarray, series: list[tuple[str, np.ndarray, tuple, int]],
                top: float, title: str, ref: float | None = None, percent: bool = False, x_ends: bool = False) -> None:
    """Lines of `series` (label, values, colour, width) over x in box; y from 0 to `top`; a dashed `ref`;
    x_ends: the first and last x written under the axis."""
    x0, y0, x1, y1 = box
    _text(d, (x0, y0), title, 28, bold=True, max_w=x1 - x0)
    py0, py1, px0, px1 = y0 + 44, y1 - 8, x0 + 70, x1 - 10
    d.rectangle([px0, py0, px1, py1], outline=AXIS, width=2)
    lo, hi = (float(x.min()), float(x.max())) if len(x) else (0.0, 1.0)
    span = hi - lo or 1.0

    def xy(xv, yv):
        return px0 + (xv - lo) / span * (px1 - px0), py1 - min(max(yv / top, 0.0), 1.0) * (py1 - py0)

    for frac in (0.0, 0.5, 1.0):
        _, yy = xy(lo, frac * top)
        _text(d, (px0 - 8, yy), f"{frac * top * 100:g}%" if percent else f"{frac * top:g}", 24, GREY, anchor="rm")
    if x_ends:
        _text(d, (px0, py1 + 6), f"{lo:g}", 24, GREY, anchor="la")
        _text(d, (px1, py1 + 6), f"{hi:g}", 24, GREY, anchor="ra")
    if ref is not None:
        _, ry = xy(lo, ref)
        for sx in range(int(px0), int(px1), 24):
            d.line([(sx, ry), (min(sx + 12, px1), ry)], fill=INK, width=2)
    legend_x = px0 + 10
    for label, values, colour, width in series:
        pts = [xy(a, b) for a, b in zip(x, values) if not math.isnan(b)]
        if len(pts) > 1:
            d.line(pts, fill=colour, width=width, joint="curve")
        elif pts:
            d.ellipse([pts[0][0] - 4, pts[0][1] - 4, pts[0][0] + 4, pts[0][1] + 4], fill=colour)
        d.rectangle([legend_x, py0 + 12, legend_x + 22, py0 + 22], fill=colour)
        legend_x += 32 + _text(d, (legend_x + 28, py0 + 4), label, 24, INK) + 12


MIN_THIRDS = 3  # slice positions with a lung field below which a scan's thirds mean nothing (one slice: all "lower")


def zone_levels(table: pd.DataFrame) -> int:
    """The slice positions with a lung field (a scan's thirds need MIN_THIRDS of them)."""
    return int(table.position_mm[table.lung_found].nunique())


def _bar(d, x0, y, width, share: float, colour, label: str) -> None:
    """One horizontal bar of a share in [0, 1] over a 0-100% track, its label above and value beside."""
    _text(d, (x0, y), label, 26, INK)
    by, bh = y + 34, 30
    d.rectangle([x0, by, x0 + width, by + bh - 1], fill=(238, 238, 242))
    if not math.isnan(share) and share > 0:
        d.rectangle([x0, by, x0 + max(2, round(min(share, 1.0) * width)), by + bh - 1], fill=colour)
    _text(d, (x0 + width + 12, by + bh // 2), "n/a" if math.isnan(share) else f"{share:.1%}", 26, INK, anchor="lm")


def scan_report(table: pd.DataFrame, summary: ScanSummary, scan_name: str, run_name: str, branches: Sequence[str],
                panels: Sequence[tuple[object, str]], notes: Sequence[str], notice: str, *, truth: str | None = None,
                subtitle: str = "", trust: str = "") -> Image.Image:
    """The report as a 1920x1080 RGB image. table, summary: core.knowledge.scan; branches: the ones whose
    p(COVID) is drawn along the scan (the decision branch thicker); panels: (image, caption) of the slices
    that drive the decision (up to 6; a caption's first four lines, split by newlines); notes: the series'
    problems, one line each (the first ones shown); trust: how far the call can be trusted, one line
    (core.trust.scan_call.CallTrust.brief)."""
    W, H = SIZE
    canvas = Image.new("RGB", SIZE, PAPER)
    d = ImageDraw.Draw(canvas)
    dec = summary.decision
    d.rectangle([0, 0, W, 135], fill=(243, 243, 246))
    _text(d, (MARGIN, 22), f"Scan report · {scan_name}", 44, bold=True, max_w=1250)
    _text(d, (W - MARGIN, 28), f"run {run_name}", 30, GREY, anchor="ra", max_w=W - 1250 - 3 * MARGIN)
    stat = "no slice with a lung field" if math.isnan(dec.statistic) else \
        f"{dec.branch} statistic {dec.statistic:.3f} vs operating point {dec.threshold:.3f}"
    colour = BAR_COLOURS["COVID"] if dec.covid else (BAR_COLOURS["non-COVID"] if dec.covid is False else GREY)
    x = MARGIN + _text(d, (MARGIN, 86), f"scan decision {dec.label}", 34, colour, bold=True)
    x += _text(d, (x, 86), f"  ({stat})", 30, INK, max_w=W - MARGIN - x - 520)
    if truth:
        _text(d, (W - MARGIN, 88), f"diagnosis on file: {truth}", 30, INK, anchor="ra", max_w=500)

    # Left: where along the scan (p of every branch, lesion share of each lung)
    xs, xlabel = _x_of(table)
    lines = [(b, table[f"p_{b}"].to_numpy(float), LINE_COLOURS[i % len(LINE_COLOURS)], 5 if b == dec.branch else 2)
             for i, b in enumerate(branches) if f"p_{b}" in table]
    _line_panel(d, (MARGIN, 150, 1180, 430), xs, lines, 1.0, "p(COVID) along the scan (dashed: the decision "
                "branch's operating point)", ref=dec.threshold)
    shares = [(f"{side} lung", table[f"{side}_share"].where(table.lung_found).to_numpy(float), SIDE_COLOURS[side], 3)
              for side in SIDES]
    top = max(0.05, float(np.nanmax([np.nanmax(s[1]) if np.isfinite(s[1]).any() else 0.0 for s in shares])))
    _line_panel(d, (MARGIN, 440, 1180, 640), xs, shares, math.ceil(top * 20) / 20, "lesion share of each lung",
                percent=True, x_ends=True)
    _text(d, (MARGIN + 610, 638), xlabel, 24, GREY, anchor="ma", max_w=800)

    # Right: opacity per lung, lesion by zone, counts
    rx, bw = 1250, 470
    _text(d, (rx, 150), "Opacity per lung (lesion / lung area)", 32, bold=True, max_w=W - MARGIN - rx)
    for j, side in enumerate(SIDES):
        _bar(d, rx, 200 + j * 80, bw, summary.opacity[side], SIDE_COLOURS[side], f"{side} lung")
    few = zone_levels(table) < MIN_THIRDS
    _text(d, (rx, 370), "Lesion along the scan (share per third" + ("; too few slices)" if few else ")"), 32, bold=True,
          max_w=W - MARGIN - rx)
    for j, zone in enumerate(ZONES):
        _bar(d, rx, 420 + j * 70, bw, math.nan if few else summary.zones[zone], (150, 150, 160), f"{zone} third")
    _text(d, (rx, 635), f"{summary.slices} slice{'' if summary.slices == 1 else 's'} · {summary.with_lung} with a "
                        f"lung field · {summary.problems} unreadable", 24, GREY, max_w=W - MARGIN - rx)
    note = "Series: " + ("; ".join(notes) if notes else "no problems found")
    _text(d, (rx, 662), note, 24, WRONG if notes else GREY, max_w=W - MARGIN - rx)

    # Bottom: the slices that drive the decision
    _text(d, (MARGIN, 690), "The slices that drive the decision", 30, bold=True)
    side, step = 150, (W - 2 * MARGIN) // 6
    for i, (img, caption) in enumerate(list(panels)[:6]):
        cx = MARGIN + i * step
        pic = _as_image(img)
        if pic is not None:
            canvas.paste(pic.resize((side, side), Image.LANCZOS), (cx, 735))
        for k, line in enumerate(caption.split("\n")[:4]):
            _text(d, (cx + side + 10, 738 + k * 28), line, 24, GREY, max_w=step - side - 20)

    rule = _wrap(d, f"Rule: {dec.words}.", 24, W - 2 * MARGIN, 2)
    for k, line in enumerate(rule):
        _text(d, (MARGIN, 890 + k * 27), line, 24, INK, max_w=W - 2 * MARGIN)
    if trust:
        _text(d, (MARGIN, 946), trust, 24, INK, max_w=W - 2 * MARGIN)
    d.rectangle([0, 975, W, H], fill=FOOTER)
    _text(d, (MARGIN, 1000), notice, 36, PAPER, bold=True, max_w=1100)
    if subtitle:
        _text(d, (W - MARGIN, 1006), subtitle, 26, PAPER, anchor="ra", max_w=W - 1100 - 3 * MARGIN)
    return canvas
