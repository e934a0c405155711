"""The Scan page's z-profile: p(COVID) of every branch and the lesion share of each lung along the scan."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.knowledge.scan import SIDES, ScanDecision
from core.results.predictions import BASELINES

BRANCH_COLOURS = ("#4C78A8", "#F58518", "#54A24B", "#B279A2", "#9D755D", "#72B7B2")
SIDE_COLOURS = {"right": "#3C9BE6", "left": "#4CBF6A"}  # the lung crops' blue and green


def along(table: pd.DataFrame) -> tuple[pd.Series, str]:
    """Each slice's place along the scan: its position in mm when every slice has one, else its index."""
    if len(table) and table.position_mm.notna().all():
        return table.position_mm, "position along the scan (mm, foot → head)"
    return table["index"], "slice (body order; the series gives no positions)"


def z_profile(table: pd.DataFrame, branches: list[str], decision: ScanDecision, shown: int | None = None,
              height: int = 520) -> go.Figure:
    """Two panels over the scan: p(COVID) of each branch (the decision branch thicker, its operating point
    dashed, the slices that drive the decision marked) and the lesion share of each lung (slices with a
    lung field). `shown`: the index of the slice on screen, marked by a vertical line."""
    x, label = along(table)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.58, 0.42],
                        subplot_titles=("p(COVID) per branch", "lesion share of each lung"))
    text = _hover_text(table)
    for i, b in enumerate(b for b in branches if b not in BASELINES and f"p_{b}" in table):
        main = b == decision.branch
        fig.add_scatter(x=x, y=table[f"p_{b}"], name=b, mode="lines", row=1, col=1, text=text,
                        line={"color": BRANCH_COLOURS[i % len(BRANCH_COLOURS)], "width": 3.5 if main else 1.5},
                        opacity=1.0 if main else 0.75,
                        hovertemplate="%{text}<br>p = %{y:.3f}<extra>" + b + "</extra>")
    top = table[table["index"].isin(decision.top)]
    fig.add_scatter(x=x[top.index], y=top[f"p_{decision.branch}"], mode="markers", row=1, col=1,
                    name="drive the decision", marker={"symbol": "diamond", "size": 9, "color": "#E8604C"},
                    text=[text[i] for i in top.index],
                    hovertemplate="%{text}<br>p = %{y:.3f}<extra>drives the decision</extra>")
    fig.add_hline(y=decision.threshold, line_dash="dash", line_color="#444", row=1, col=1,
                  annotation_text=f"{decision.branch} operating point {decision.threshold:.3f}",
                  annotation_position="top left")
    _lesion_panel(fig, table, x, text, shown, {"row": 2, "col": 1})
    fig.update_yaxes(range=[0, 1.02], title="p(COVID)", row=1, col=1)
    fig.update_xaxes(title=label, row=2, col=1)
    fig.update_layout(height=height, margin={"l": 0, "r": 10, "t": 30, "b": 0}, legend={"orientation": "h", "y": -0.16},
                      hovermode="closest")
    return fig


def lesion_profile(table: pd.DataFrame, shown: int | None = None, height: int = 320) -> go.Figure:
    """The lesion share of each lung along the scan (slices with a lung field) alone: the Scan page before the
    run's classifiers exist. `shown`: the slice on screen, marked by a vertical line."""
    x, label = along(table)
    fig = make_subplots(rows=1, cols=1, subplot_titles=("lesion share of each lung",))
    _lesion_panel(fig, table, x, _hover_text(table), shown, {"row": 1, "col": 1})
    fig.update_xaxes(title=label)
    fig.update_layout(height=height, margin={"l": 0, "r": 10, "t": 30, "b": 0}, legend={"orientation": "h", "y": -0.3},
                      hovermode="closest")
    return fig


def _hover_text(table: pd.DataFrame) -> list[str]:
    return [f"slice {i} · {f}" for i, f in zip(table["index"], table.file.map(lambda f: str(f).rsplit('/', 1)[-1]))]


def _lesion_panel(fig: go.Figure, table: pd.DataFrame, x: pd.Series, text: list[str], shown: int | None,
                  at: dict) -> None:
    """Each lung's lesion share (%) along the scan into the subplot `at`, and the line of the slice `shown`."""
    lungs = table.lung_found
    for side in SIDES:
        fig.add_scatter(x=x, y=table[f"{side}_share"].where(lungs) * 100, name=f"{side} lung", mode="lines+markers",
                        line={"color": SIDE_COLOURS[side], "width": 2}, marker={"size": 4}, text=text,
                        hovertemplate="%{text}<br>%{y:.1f}% of the lung<extra>" + side + " lung</extra>", **at)
    if shown is not None and 0 <= shown < len(table):
        fig.add_vline(x=float(x.iloc[shown]), line_color="#E8604C", line_width=1.5)
    fig.update_yaxes(rangemode="tozero", title="% of the lung", **at)
