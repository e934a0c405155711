"""Layout pieces shared by the pages: the current run, notices, probability charts, the tau panel."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.data.imaging import ImageReadError
from core.explain.attention import Box
from core.knowledge import lung_window
from core.knowledge.decision import TwoStepDecision
from core.pictures import slice_images
from core.results.external_tables import chosen_on
from core.runs.feature_cache import CacheError
from core.runs.run_view import RunView
from dashboard import data, knowledge_ui, trust_ui, waiting
from dashboard.map_args import CLASS_NAMES, PALETTE

RESEARCH_NOTICE = "Research use only — not for clinical diagnosis."
CASE_PAGE = "views/case.py"
SCAN_CASE = "_scan_case"  # the session's scan slice (dashboard.scans.ScanCase) the Case view shows instead
PLOTLY_CONFIG = {"displaylogo": False}
SMALL_CHART_CONFIG = {"displayModeBar": False}
NO_LUNG_FIELD = ("No lung field was found on this slice (a scan's neck or abdomen, or a picture the lung finder cannot "
                 "read): there is no lung for the signs to measure, so every sign is 0.")
# Beside the call of a slice without a lung field (a blank picture, the neck): the call reads no lung
NO_LUNGS_CALL = "**no lung field found: this call reads no lung, so it is no answer about the lungs**"
MAX_NAMED = 10  # files a warning names one by one; the rest go under an expander
NO_SECOND_RUN = "(no second run)"  # the "Compare with" choice; no run folder can carry this name


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
        return self.rv.pipeline.tau

    @property
    def cam_method(self) -> str:
        return self.rv.pipeline.cam

    def trained(self):
        return data.trained(self.runs, self.name, self.stamp)


def current() -> Ctx:
    """The run picked in the sidebar (app.py stores it in the session)."""
    runs, name = st.session_state["_runs_dir"], st.session_state["run_name"]
    stamp = data.stamp(runs, name)
    return Ctx(runs, name, stamp, data.view(runs, name, stamp))


def comparison_name() -> str | None:
    """The name of the second run picked in the sidebar ("Compare with"), trained or not, or None."""
    other = st.session_state.get("compare_name")
    if other in (None, NO_SECOND_RUN) or other == st.session_state.get("run_name"):
        return None
    return other


def comparison() -> Ctx | None:
    """The second run picked in the sidebar ("Compare with") once it has finished training, or None (a
    caption says a run still training is compared on the Training page only; a warning, a run that cannot
    be read)."""
    other = comparison_name()
    if other is None:
        return None
    runs = st.session_state["_runs_dir"]
    if not waiting.ready(runs, other, waiting.COMPLETE):
        st.caption(f"Compare with: `{other}` has not finished training; the Training page shows both runs now, "
                   "this page once it has finished.")
        return None
    try:
        stamp = data.stamp(runs, other)
        ctx = Ctx(runs, other, stamp, data.view(runs, other, stamp))
        _ = ctx.rv.pipeline, ctx.df  # what every page reads of it: its settings, its predictions and thresholds
    except Exception as exc:  # noqa: BLE001 (a broken run folder, as app.py says of the main run: not a traceback)
        st.warning(f"Compare with: run `{other}` cannot be read ({exc}); this page shows "
                   f"`{st.session_state['run_name']}` alone.", icon="⚠️")
        return None
    return ctx


def decisions(ctx: Ctx, other: Ctx) -> pd.DataFrame:
    return data.decisions(ctx.runs, ctx.name, ctx.stamp, other.name, other.stamp)


def coverage_note(ctx: Ctx, other: Ctx) -> str:
    """Says how many slices only one of the two runs holds (other data): they are not compared."""
    d = decisions(ctx, other)
    only_a, only_b = int((d.in_a & ~d.in_b).sum()), int((d.in_b & ~d.in_a).sum())
    if not only_a and not only_b:
        return f"Both runs scored the same {len(d)} slices."
    return (f"{int((d.in_a & d.in_b).sum())} slices are in both runs; {only_a} only in {ctx.name} and {only_b} only "
            f"in {other.name} (other data): those are not compared slice by slice.")


def upload_limit_mb() -> int:
    """The largest file an upload takes, in MB (`server.maxUploadSize`, declared in .streamlit/config.toml)."""
    return int(st.get_option("server.maxUploadSize"))


def research_notice() -> None:
    st.warning(f"**{RESEARCH_NOTICE}** The probabilities and maps come from an experimental model.", icon="⚠️")


def synthetic_banner(rv: RunView) -> None:
    st.error(f"**Synthetic run:** `{rv.name}` was trained on generated phantoms, not on patients' CT scans; "
             "it only shows that the pipeline works end to end.", icon="🧪")


def open_case(key: str) -> None:
    """Select a slice and go to the Case page."""
    st.session_state["selected_key"] = key
    st.session_state.pop(SCAN_CASE, None)  # a run's slice, not the scan slice shown before
    st.switch_page(CASE_PAGE)


def open_scan_case(case) -> None:
    """Show a slice of a scan (dashboard.scans.ScanCase) in the Case page."""
    st.session_state[SCAN_CASE] = case
    st.switch_page(CASE_PAGE)


def probs_frame(probs: dict, order: list[str]) -> pd.DataFrame:
    """branch, p(COVID): the branches in `order` first, then any others."""
    names = [b for b in order if b in probs] + [b for b in probs if b not in order]
    return pd.DataFrame({"branch": names, "p(COVID)": [float(probs[b]) for b in names]})


def box_text(box: Box) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in box.as_list()) + "]"


RUN_COLOURS = ("#4C78A8", "#F58518")  # the run, the comparison run


def prob_chart(df: pd.DataFrame, thresholds: dict[str, dict[str, float]], height: int = 220) -> go.Figure:
    """Horizontal bars of p(COVID) per branch, each with a black tick at that branch's own operating point (the
    case report's picture): one cut for all would call a slice differently from the page beside it. `df`: branch
    and one or more probability columns (one run's, or one per run); `thresholds`: column -> branch -> the
    operating point. One column: a bar is red on the COVID side of its tick, blue on the other; several: one
    colour per column, named in the legend."""
    fig = go.Figure()
    cols = [c for c in df.columns if c != "branch"]
    branches = df["branch"].tolist()
    tick = max(8, min(22, round((height - 50) / max(1, len(branches)) * 0.8 / len(cols))))  # the bar's thickness
    for i, c in enumerate(cols):
        cuts = [thresholds.get(c, {}).get(b) for b in branches]
        if len(cols) == 1:
            colour = [PALETTE["COVID"] if pd.notna(v) and t is not None and v >= t else PALETTE["non-COVID"]
                      for v, t in zip(df[c], cuts)]
        else:
            colour = RUN_COLOURS[i % len(RUN_COLOURS)]
        fig.add_bar(y=branches, x=df[c].tolist(), orientation="h", name=c, marker_color=colour, offsetgroup=str(i),
                    hovertemplate="%{y}: %{x:.3f}<extra>" + c + "</extra>")
        fig.add_scatter(y=branches, x=cuts, mode="markers", orientation="h", offsetgroup=str(i), showlegend=False,
                        name=f"{c} · operating point", hovertemplate="%{y}: operating point %{x:.3f}<extra></extra>",
                        marker=dict(symbol="line-ns", size=tick + 8, line=dict(width=3, color="#222")))
    # the values in a column right of 1, where no tick or bar end covers them (several columns: "a / b", in order)
    values = [" / ".join("" if pd.isna(v) else f"{v:.3f}" for v in row) for row in df[cols].itertuples(index=False)]
    fig.add_scatter(y=branches, x=[1.01] * len(branches), mode="text", showlegend=False, text=values,
                    textposition="middle right", hoverinfo="skip", name="values")
    fig.update_layout(height=height, margin=dict(l=0, r=10, t=8, b=0), barmode="group", scattermode="group",
                      xaxis=dict(range=[0, 1.14 + 0.1 * (len(cols) - 1)], title="p(COVID)",
                                 tickvals=[0, 0.2, 0.4, 0.6, 0.8, 1]),
                      yaxis=dict(autorange="reversed"), legend=dict(orientation="h", y=-0.3),
                      showlegend=len(cols) > 1)
    return fig


PROB_CHART_KEY = "black tick: the branch's operating point; a red bar stands on its COVID side"  # prob_chart, 1 run


def lungs_black_note(black: lung_window.LungsBlack | None) -> None:
    """A warning when the slice's lungs are black, shown in a soft-tissue window (core.knowledge.lung_window)."""
    if not lung_window.readable(black):
        st.warning(f"{lung_window.WORDS} ({black.share:.0%} of its {black.of} is black.)", icon="🌑")


def file_lungs_black_note(path) -> None:
    """lungs_black_note of a slice file (the Case view's, the Data page's); a file that cannot be read is said."""
    try:
        black = data.lungs_black(str(path), Path(path).stat().st_mtime_ns)
    except (OSError, ImageReadError) as exc:  # the data location is not here, or the file is damaged
        st.caption(f"No check of the slice's display window: {exc}")
        return
    lungs_black_note(black)


def out_of_range_note(rv: RunView, vector) -> None:
    """Warn when a slice's fusion-layer input lies far outside what the training split showed."""
    worst, ref = rv.out_of_range(vector)
    if worst > 4 * ref:
        st.warning(f"This slice's fusion-layer input lies far outside the training split's range "
                   f"(largest standardised feature {worst:,.0f} vs {ref:,.1f} in training): the fusion "
                   "probability extrapolates and should not be trusted.", icon="📏")


def live_analysis(ctx: Ctx, tr, a, images: dict, fusion_vector, order: list[str], key: str, caption: str,
                  cam_caption: str, slice01) -> None:
    """A live SliceAnalysis `a` (with its core.pictures.slice_images.analysis_images `images`) as the New slice page
    and the Case view of a scan slice draw it: the decision branch's call at its operating point, the range
    check of its fusion-layer input, every branch's probability, the radiological signs and the two steps of
    the decision (dashboard.knowledge_ui), the tau panel, the lesions and the fusion CAM. `key` prefixes the
    widgets' keys; `caption` is the slice's, `cam_caption` the fusion CAM's; `slice01` the slice as read (the
    out-of-distribution flag's image check)."""
    decision = ctx.rv.decision_branch()  # fusion when trained; never a baseline such as lesion-share
    p = a.probs.get(decision)
    if p is not None:
        t = ctx.rv.thresholds[decision]
        st.markdown(f"**{decision}**: p(COVID) = {p:.3f} → **{'COVID' if p >= t else 'non-COVID'}** "
                    f"(operating point {t:.3f}, chosen on {chosen_on(decision)}; margin {abs(p - t):.3f})"
                    + ("" if a.lung_found else f" · {NO_LUNGS_CALL}"))
    try:
        out_of_range_note(ctx.rv, fusion_vector)
    except (FileNotFoundError, ValueError, CacheError) as exc:  # a partial run: no stored fusion features
        st.caption(f"No range check of the fusion-layer input: {exc}")
    trust_ui.slice_trust(ctx, p, fusion_vector, data.image_statistics(slice01))
    if not a.lung_found:
        step_one = " Step 1 of the two-step decision reads no disease." if decision == TwoStepDecision.name else ""
        st.warning(NO_LUNG_FIELD + step_one + " The networks saw the whole slice, which is not what they were "
                   "trained on: their probabilities deserve less trust.")
    lungs_black_note(a.lungs_black)
    left, right = st.columns([1, 1.4])
    left.image(images["slice"], width=300, caption=caption)
    with right:
        probs = probs_frame(a.probs, order)
        st.caption(PROB_CHART_KEY)
        st.plotly_chart(prob_chart(probs, {"p(COVID)": ctx.rv.thresholds}), width="stretch",
                        config=SMALL_CHART_CONFIG, key=f"{key}_probs")
        st.dataframe(probs, hide_index=True, width="stretch",
                     column_config={"p(COVID)": st.column_config.NumberColumn(format="%.4f")})
    knowledge_ui.live(tr.two_step, a, knowledge_ui.step_one_record(data.external_report(ctx.runs, ctx.name, ctx.stamp)))
    st.subheader(f"Attention map ({trust_ui.method_label(ctx, ctx.cam_method)}) and the tau crop")

    @st.fragment
    def tau_panel():  # a slider move reruns only this panel
        tau_controls(tr, a, None, ctx.tau, f"{key}_tau", order)

    tau_panel()
    st.subheader("Infected regions and the lung crops")
    lesion_row(images, cam_caption)


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
    imgs = slice_images.tau_images(r, tau)
    c1, c2, c3, c4 = st.columns([1, 1, 1, 1.35])
    c1.image(imgs["attention"], caption="attention map + its tau box", width="stretch")
    c2.image(imgs["region"], caption=f"largest region of H > {tau:.2f}", width="stretch")
    c3.image(imgs["crop"], caption="heatmap-branch crop", width="stretch")
    with c4:
        st.markdown(f"crop box `{box_text(r.box)}`" + (" (nothing passed tau: whole slice)" if r.box_empty else ""))
        st.caption(f"[y0, x0, y1, x1] as fractions of the slice · box area {r.box.area:.3f} · re-scored in {ms:.0f} ms")
        live = probs_frame(r.probs, order).rename(columns={"p(COVID)": f"live, tau={tau:.2f}"})
        if stored is not None:
            live.insert(1, "stored", [stored.get(b) for b in live.branch])
        st.dataframe(live, hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.3f") for c in live.columns if c != "branch"})


def runs_dir_label(runs: str | Path) -> str:
    return str(Path(runs).resolve())


def ci_bars(df: pd.DataFrame, x: str, value: str, group: str | None = None, *, title: str, axis: str,
            refs: tuple = (), height: int = 360) -> go.Figure:
    """Bars of `value` per `x` with 95% intervals (columns low/high), one colour per `group` (the run),
    and dotted reference lines `refs`: (value, label) pairs such as chance."""
    fig = go.Figure()
    groups = list(dict.fromkeys(df[group])) if group else [None]
    for i, g in enumerate(groups):
        part = df if g is None else df[df[group] == g]
        fig.add_bar(x=part[x].tolist(), y=part[value].tolist(), name=str(g) if g is not None else value,
                    marker_color=RUN_COLOURS[i % len(RUN_COLOURS)],
                    error_y=dict(type="data", symmetric=False, array=(part["high"] - part[value]).tolist(),
                                 arrayminus=(part[value] - part["low"]).tolist(), thickness=1.5, width=6),
                    text=[f"{v:.2f}" for v in part[value]], textposition="inside",
                    hovertemplate="%{x}<br>%{y:.3f}<extra>" + (str(g) if g is not None else "") + "</extra>")
    for v, label in refs:
        fig.add_hline(y=v, line_dash="dot", line_color="#666", annotation_text=label,
                      annotation_position="top left")
    fig.update_layout(title=title, height=height, barmode="group", margin=dict(l=0, r=0, t=40, b=0),
                      yaxis=dict(range=[0, 1.05], title=axis), xaxis=dict(title=None, automargin=True),
                      legend=dict(orientation="h", y=-0.18), showlegend=group is not None and len(groups) > 1)
    return fig


def comparison_case(ctx: Ctx, other: Ctx, key: str, stored: dict, order: list[str]) -> None:
    """The same slice in the comparison run: its decision, every branch's probability beside this run's,
    and both runs' stored maps (attention with the tau box, lesions, fusion CAM)."""
    st.subheader(f"Beside {other.name}")
    rows = other.df.set_index("key")
    if key not in rows.index:
        st.info(f"`{key}` is not in {other.name}'s data: nothing to compare for this slice.")
        return
    o = rows.loc[key]
    theirs = {b: float(o[f"p_{b}"]) for b in data.branches(other.df)}
    mine_pred = int(ctx.df.set_index("key").at[key, "pred"])
    st.markdown(f"**{other.name}** decides {CLASS_NAMES[int(o.pred)]} (p = {o.p:.3f}, {other.rv.decision_branch()}): "
                + ("**the decision changed**" if int(o.pred) != mine_pred else "the same decision"))
    branches = list(dict.fromkeys([*order, *theirs]))
    both = pd.DataFrame({"branch": branches, ctx.name: [stored.get(b) for b in branches],
                         other.name: [theirs.get(b) for b in branches]})
    st.caption(f"black tick: each run's operating point of that branch; values: {ctx.name} / {other.name}")
    st.plotly_chart(prob_chart(both, {ctx.name: ctx.rv.thresholds, other.name: other.rv.thresholds},
                               height=60 + 34 * len(branches)), width="stretch", config=SMALL_CHART_CONFIG,
                    key="compare_probs")
    for c in (ctx, other):
        try:
            imgs = data.case_images(c.runs, c.name, c.stamp, key)
        except (OSError, ValueError, CacheError, ImageReadError) as exc:  # a partial run: no stored maps
            st.caption(f"{c.name} · no stored maps of this slice: {exc}")
            continue
        image_row([(imgs.get("lung_field", imgs["slice"]), f"{c.name} · slice as it sees it"),
                   (imgs["attention"], f"{c.name} · attention map + tau box"),
                   (imgs["lesion"], f"{c.name} · infected regions"), (imgs["fusion_cam"], f"{c.name} · fusion CAM")])
