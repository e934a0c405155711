"""Layout pieces shared by the pages: the current run, notices, probability charts, the tau panel."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.run_view import RunView

from dashboard import data

RESEARCH_NOTICE = "Research use only — not for clinical diagnosis."
CASE_PAGE = "views/case.py"
PLOTLY_CONFIG = {"displaylogo": False}
SMALL_CHART_CONFIG = {"displayModeBar": False}


@dataclass
class Ctx:
    runs: str
    name: str
    stamp: str
    rv: RunView

    @property
    def df(self) -> pd.DataFrame:
        return data.predictions(self.runs, self.name, self.stamp)

    @property
    def tau(self) -> float:
        return float((self.rv.config.get("pipeline") or {}).get("tau", 0.75))

    @property
    def cam_method(self) -> str:
        return str((self.rv.config.get("pipeline") or {}).get("cam", "eq1"))

    def trained(self):
        return data.trained(self.runs, self.name, self.stamp)


def current() -> Ctx:
    """The run picked in the sidebar (app.py stores it in the session)."""
    runs, name = st.session_state["_runs_dir"], st.session_state["run_name"]
    stamp = data.stamp(runs, name)
    return Ctx(runs, name, stamp, data.view(runs, name, stamp))


def research_notice() -> None:
    st.warning(f"**{RESEARCH_NOTICE}** The probabilities and maps come from an experimental model.", icon="⚠️")


def synthetic_banner(rv: RunView) -> None:
    st.error(f"**Synthetic run:** `{rv.name}` was trained on generated phantoms, not on patients' CT scans; "
             "it only shows that the pipeline works end to end.", icon="🧪")


def open_case(key: str) -> None:
    """Select a slice and go to the Case page."""
    st.session_state["selected_key"] = key
    st.switch_page(CASE_PAGE)


def prob_chart(df: pd.DataFrame, height: int = 220, title: str = "") -> go.Figure:
    """Horizontal bars of p(COVID) per branch; columns: branch and one or more probability columns."""
    fig = go.Figure()
    cols = [c for c in df.columns if c != "branch"]
    colours = ["#4C78A8", "#F58518", "#54A24B"]
    for i, c in enumerate(cols):
        fig.add_bar(y=df["branch"], x=df[c], orientation="h", name=c, marker_color=colours[i % len(colours)],
                    text=[f"{v:.3f}" if pd.notna(v) else "" for v in df[c]], textposition="outside")
    fig.add_vline(x=0.5, line_dash="dash", line_color="#888")
    fig.update_layout(height=height, margin=dict(l=0, r=10, t=30 if title else 8, b=0), barmode="group",
                      title=title or None, xaxis=dict(range=[0, 1.12], title="p(COVID)"),
                      yaxis=dict(autorange="reversed"), legend=dict(orientation="h", y=-0.3),
                      showlegend=len(cols) > 1)
    return fig


def out_of_range_note(rv: RunView, vector) -> None:
    """Warn when a slice's fusion-layer input lies far outside what the training split showed."""
    try:
        worst, ref = data.out_of_range(rv, vector)
    except Exception:
        return
    if worst > 4 * ref:
        st.warning(f"This slice's fusion-layer input lies far outside the training split's range "
                   f"(largest standardised feature {worst:,.0f} vs {ref:,.1f} in training): the fusion "
                   "probability extrapolates and should not be trusted.", icon="📏")


def image_row(items: list[tuple[bytes, str]], width: int | None = None) -> None:
    cols = st.columns(len(items))
    for col, (img, caption) in zip(cols, items):
        col.image(img, caption=caption, width=width or "stretch")


def lesion_row(images: dict[str, bytes], cam_caption: str) -> None:
    """The infected-region mask, both lung crops and the fusion CAM, side by side."""
    image_row([(images["lesion"], "infected-region mask (p > 0.5): lesion boxes red, lung crops blue/green"),
               (images["right_lung"], "right-lung crop (image left)"),
               (images["left_lung"], "left-lung crop (image right)"),
               (images["fusion_cam"], cam_caption)])


def tau_controls(tr, a, stored: dict | None, default_tau: float, slider_key: str, order: list[str]) -> None:
    """Tau slider -> Eq. 2 region, largest region, crop box; heatmap branch and fusion re-scored.

    Call inside an @st.fragment so a slider move reruns only this panel."""
    tau = st.slider("tau (Eq. 2 threshold)", 0.05, 0.95, value=default_tau, step=0.01, key=slider_key,
                    help="Pixels of the attention map above tau form the binary map; its largest 8-connected "
                         "region gives the crop the heatmap branch sees.")
    r, ms = data.rescore(tr, a, tau)
    imgs = data.tau_images(r, tau)
    c1, c2, c3, c4 = st.columns([1, 1, 1, 1.35])
    c1.image(imgs["attention"], caption="attention map + its tau box", width="stretch")
    c2.image(imgs["region"], caption=f"largest region of H > {tau:.2f}", width="stretch")
    c3.image(imgs["crop"], caption="heatmap-branch crop", width="stretch")
    with c4:
        st.markdown(f"crop box `{data.box_text(r.box)}`" + (" (nothing passed tau: whole slice)" if r.box_empty else ""))
        st.caption(f"[y0, x0, y1, x1] as fractions of the slice · box area {r.box.area:.3f} · re-scored in {ms:.0f} ms")
        live = data.probs_frame(r.probs, order).rename(columns={"p(COVID)": f"live, tau={tau:.2f}"})
        if stored is not None:
            live.insert(1, "stored", [stored.get(b) for b in live.branch])
        st.dataframe(live, hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.3f") for c in live.columns if c != "branch"})


def runs_dir_label(runs: str | Path) -> str:
    return str(Path(runs).resolve())
