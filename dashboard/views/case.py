"""Case: one slice, every branch's probability, its attention map with a live tau, lesions, fusion CAM, neighbours,
the reviewer's verdict."""
import streamlit as st

from core.data.imaging import ImageReadError
from core.runs.feature_cache import CacheError
from core.trust.models import FUSION_CAM
from dashboard import data, knowledge_ui, report_ui, scan_case, trust_ui, ui, verdicts_ui

ctx = ui.current()
if st.session_state.get(ui.SCAN_CASE) is not None:  # a slice of a scan, opened from the Scan page
    scan_case.show(ctx, st.session_state[ui.SCAN_CASE])
    st.stop()
df = ctx.df
order = data.branches(df)
rows = df.set_index("key")
_rank = {"test": 0, "val": 1, "train": 2}
keys = sorted(rows.index, key=lambda k: (_rank.get(rows.at[k, "split"], 3), k))  # test slices first


def _pick():
    st.session_state["selected_key"] = st.session_state["case_pick"]


def _open(key):
    st.session_state["selected_key"] = key


selected = st.session_state.get("selected_key")
if selected not in rows.index:
    selected = keys[0]
    st.session_state["selected_key"] = selected
st.session_state["case_pick"] = selected  # the picker follows selections made on other pages

st.title("Case view")
st.selectbox("Slice", keys, key="case_pick", on_change=_pick,
             format_func=lambda k: f"{k}  ({rows.at[k, 'split']}, {'COVID' if rows.at[k, 'label'] == 1 else 'non-COVID'})")
key = selected
r = rows.loc[key]
truth = "COVID" if r.label == 1 else "non-COVID"
pred = "COVID" if r.pred == 1 else "non-COVID"
st.markdown(f"### `{key}`")
st.markdown(f"**truth** {truth} · **prediction** ({ctx.rv.decision_branch()}) {pred}, p = {r.p:.3f} · "
            f"**{r.outcome}** · split {r.split} · margin {r.margin:.3f}"
            + (" · branches disagree" if r.disagreement else ""))

stored = {b: float(r[f"p_{b}"]) for b in order}
try:
    vector = ctx.rv.fusion_input(key)
except (FileNotFoundError, ValueError, CacheError) as exc:  # a partial run: no fusion features for this slice
    vector = None
    st.caption(f"No range check of the fusion-layer input: {exc}")
else:
    ui.out_of_range_note(ctx.rv, vector)
try:
    statistics = data.slice_statistics(ctx.runs, ctx.name, ctx.stamp, key)
except (FileNotFoundError, ImageReadError) as exc:  # the run's data location is not here, or the file is damaged
    statistics = None
    st.caption(f"No image check of this slice: {exc}")
trust_ui.slice_trust(ctx, r.p, vector, statistics)
ui.file_lungs_black_note(ctx.rv.slice_paths[key])
try:
    imgs = data.case_images(ctx.runs, ctx.name, ctx.stamp, key)
except Exception as exc:
    st.error(f"The stored maps of this slice cannot be shown: {exc}")
    st.stop()

top_l, top_r = st.columns([1, 1.4])
with top_l:
    if "lung_field" in imgs:
        st.image(imgs["lung_field"], width=300, caption="slice as the run sees it (its lung field, harmonised); "
                 "the lung field outlined in cyan")
    else:
        st.image(imgs["slice"], width=300, caption="slice, as the run sees it")
with top_r:
    st.markdown(f"**Every branch's probability** (stored, from the run's predictions; {ui.PROB_CHART_KEY})")
    st.plotly_chart(ui.prob_chart(ui.probs_frame(stored, order), {"p(COVID)": ctx.rv.thresholds}), width="stretch",
                    config=ui.SMALL_CHART_CONFIG, key="case_probs")
    with st.expander("as a table"):
        st.dataframe(ui.probs_frame(stored, order), hide_index=True, width="stretch",
                     column_config={"p(COVID)": st.column_config.NumberColumn(format="%.4f")})

knowledge_ui.stored(data.two_step(ctx.runs, ctx.name, ctx.stamp), r,
                    knowledge_ui.step_one_record(data.external_report(ctx.runs, ctx.name, ctx.stamp)))

other = ui.comparison()
if other is not None:
    ui.comparison_case(ctx, other, key, stored, order)

st.subheader(f"Attention map ({trust_ui.method_label(ctx, ctx.cam_method)}) and the tau crop")


@st.fragment
def tau_panel():
    tr = a = None
    try:
        tr = ctx.trained()
        a = data.analysis(ctx.runs, ctx.name, ctx.stamp, key)
    except Exception as exc:
        st.error(f"Live re-scoring is unavailable for this run: {exc}")
    else:
        ui.tau_controls(tr, a, stored, ctx.tau, "tau", order)
    # In the fragment, so the report follows the slider (a slider move reruns only this panel).
    report_ui.report_buttons(ctx, key, stored, st.session_state.get("tau", ctx.tau), tr, a)


tau_panel()

st.subheader("Infected regions (Inf-Net segmenter) and the lung crops")
ui.lesion_row(imgs, f"{trust_ui.fusion_cam_label(ctx)} (at the run's tau {ctx.tau:.2f})")

with st.expander("Can these maps be trusted? (sanity checks of the map methods)"):
    if not trust_ui.maps_missing(ctx):
        for method in (ctx.cam_method, FUSION_CAM):
            st.markdown(f"**{trust_ui.method_label(ctx, method)}**")
            trust_ui.map_verdicts(ctx, method)

st.subheader("Nearest neighbours in fusion-feature space")
try:
    neighbours = ctx.rv.neighbours(key, k=6)
except Exception as exc:
    neighbours = []
    st.caption(f"No neighbours: {exc}")
cols = st.columns(6)
for col, (nk, dist) in zip(cols, neighbours):
    nr = rows.loc[nk]
    with col:
        st.image(data.thumbnail(ctx.runs, ctx.name, ctx.stamp, nk), width="stretch")
        st.caption(f"{nk.split('/')[-1]} · {'COVID' if nr.label == 1 else 'non-COVID'} · p={nr.p:.2f} · d={dist:.1f}")
        st.button("Open", key=f"nb_{nk}", on_click=_open, args=(nk,), width="stretch")

st.subheader("Reviewer's verdict")
verdicts_ui.verdict_form(ctx, key, "case")
