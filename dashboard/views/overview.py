"""Overview: the decision at a glance (core.results.glance), metrics with 95% intervals beside the paper's, ROC,
confusion matrix, calibration, branch probe, explanation fidelity, timings."""
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from core.audits.branch_probe import PROBE_FILE
from core.audits.shortcut import AUDIT_TABLE
from core.results.external_tables import chosen_on
from core.results.metrics import METRICS
from core.results.predictions import REPORTED_SPLITS
from dashboard import data, ui

ctx = ui.current()
df = ctx.df
rv = ctx.rv
decision = rv.decision_branch()
splits = [s for s in REPORTED_SPLITS if s in set(df.split)] or data.splits(df)

st.title(f"Overview · {ctx.name}")
pipe = rv.pipeline
st.caption(f"Backbone {pipe.backbone} ({pipe.init} init), strategy {pipe.strategy}, "
           f"attention {pipe.cam}, tau {pipe.tau}. Decision branch: **{decision}**. "
           "Intervals: Wilson (accuracy, sensitivity, specificity), stratified bootstrap (F1, AUC).")

st.subheader(f"The decision at a glance · {decision}")
st.dataframe(data.glance(ctx.runs, ctx.name, ctx.stamp), hide_index=True, width="stretch")
st.caption(f"Each number with its 95% interval, on data that chose nothing: the decision and its operating point were "
           f"chosen on {chosen_on(decision)}. Lesion share alone: the segmenter's share of the lung field as a score, "
           "no classifier. Each source in detail: *Does it look at the disease?*")

other = ui.comparison()
if other is not None:
    st.caption(f"Compared with **{other.name}**: its tables beside this run's, then the difference "
               f"({other.name} minus {ctx.name}). " + ui.coverage_note(ctx, other))
for split in splits:
    n = int((df.split == split).sum())
    st.subheader(f"{split} · {n} slices")
    table = data.metric_table(ctx.runs, ctx.name, ctx.stamp, split).drop(columns="n")
    if other is None:
        st.dataframe(table, hide_index=True, width="stretch")
        continue
    left, right = st.columns(2)
    left.markdown(f"**{ctx.name}**")
    left.dataframe(table, hide_index=True, width="stretch")
    right.markdown(f"**{other.name}**")
    if split in set(other.df.split):
        right.dataframe(data.metric_table(other.runs, other.name, other.stamp, split).drop(columns="n"),
                        hide_index=True, width="stretch")
        st.markdown(f"**Difference** · {other.name} minus {ctx.name}")
        st.dataframe(data.metric_difference(ctx, other, split), hide_index=True, width="stretch",
                     column_config={m: st.column_config.NumberColumn(format="%+.3f") for m in METRICS})
    else:
        right.info(f"{other.name} has no {split} split.")

st.subheader("Beside the paper")
paper, ours = st.columns(2)
with paper:
    st.markdown("**Nguyen et al. 2020** · COVID-CT test split, DenseNet-169, ImageNet init")
    st.dataframe(rv.paper_table(), hide_index=True, width="stretch")
with ours:
    comp = data.paper_comparison(ctx.runs, ctx.name, ctx.stamp, splits[-1])
    st.markdown(f"**This run** · {splits[-1]} split, {pipe.backbone}")
    st.dataframe(comp, hide_index=True, width="stretch")

st.divider()
split = st.radio("Split for the plots", splits, index=len(splits) - 1, horizontal=True, key="overview_split")
c1, c2, c3 = st.columns(3)
with c1:
    curves = data.roc_curves(ctx.runs, ctx.name, ctx.stamp, split)
    fig = go.Figure()
    for b, c in curves.items():
        fig.add_scatter(x=c["fpr"], y=c["tpr"], mode="lines", name=f"{b} (AUC {c['auc']:.3f})",
                        line=dict(width=3 if b == decision else 1.6))
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#999"), showlegend=False)
    fig.update_layout(title="ROC per branch", height=420, margin=dict(l=0, r=0, t=40, b=0),
                      xaxis_title="1 - specificity", yaxis_title="sensitivity",
                      legend=dict(orientation="h", y=-0.22), xaxis=dict(range=[0, 1]), yaxis=dict(range=[0, 1.02]))
    if not curves:
        st.info(f"The {split} split holds a single class: no ROC curve.")
    st.plotly_chart(fig, width="stretch", config=ui.PLOTLY_CONFIG, key="roc")
with c2:
    m = data.confusion(ctx.runs, ctx.name, ctx.stamp, split)
    fig = px.imshow(m, x=["pred non-COVID", "pred COVID"], y=["non-COVID", "COVID"], text_auto=True,
                    color_continuous_scale="Blues", aspect="equal", zmin=0)
    fig.update_traces(textfont_size=22)
    fig.update_layout(title=f"Confusion matrix · {decision} · {split}", height=420, margin=dict(l=0, r=0, t=40, b=0),
                      coloraxis_showscale=False, yaxis_title="truth")
    st.plotly_chart(fig, width="stretch", config=ui.PLOTLY_CONFIG, key="confusion")
with c3:
    cal = data.calibration(ctx.runs, ctx.name, ctx.stamp, split)
    fig = go.Figure()
    for b, g in cal.groupby("branch", sort=False):
        fig.add_scatter(x=g.mean_p, y=g.observed, mode="lines+markers", name=b, customdata=g.n,
                        hovertemplate="mean p %{x:.2f}<br>observed %{y:.2f}<br>n %{customdata}",
                        marker=dict(size=6 + 10 * g.n / max(1, cal.n.max())),
                        line=dict(width=3 if b == decision else 1.4),
                        visible=True if b == decision else "legendonly")
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#999"), name="perfect",
                    showlegend=False)
    fig.update_layout(title="Calibration (reliability, 10 bins)", height=420, margin=dict(l=0, r=0, t=40, b=0),
                      xaxis_title="mean predicted p(COVID)", yaxis_title="observed COVID fraction",
                      xaxis=dict(range=[0, 1]), yaxis=dict(range=[-0.02, 1.02]), legend=dict(orientation="h", y=-0.22))
    st.plotly_chart(fig, width="stretch", config=ui.PLOTLY_CONFIG, key="calibration")
    st.caption("The decision branch is drawn; click a branch in the legend to add it. Marker size: slices per bin.")

strategies = data.strategy_comparison(ctx.runs, ctx.name, ctx.stamp)
if strategies is not None:
    table, source = strategies
    st.subheader("Training strategies (the paper's Table 3)")
    st.caption(f"Fusion branch on the test split; from {source}. This run: {pipe.strategy}.")
    st.dataframe(table, hide_index=True, width="stretch")

st.divider()
st.subheader("Beyond the paper")

def measured_table(title: str, filename: str, command: str, caption: str) -> None:
    """A table a `python -m train` command wrote into the run folder, or the command that writes it."""
    st.markdown(title)
    table = rv.run_table(filename)
    if table is None:
        st.caption(f"Not measured for this run: `python -m train {command} --run {rv.run.path}`")
    else:
        st.dataframe(table, hide_index=True, width="stretch")
        st.caption(caption)


b1, b2 = st.columns(2)
with b1:
    measured_table("**What each branch adds** · one logistic layer refitted on the validation split only",
                   PROBE_FILE, "probe",
                   "If a row that adds a branch does not beat `global` on test AUC, that branch carries nothing "
                   "the global branch lacks. `trained_test_auc`: the branch as trained in the pipeline.")
with b2:
    measured_table("**Explanation fidelity** · CAMs against the lesion masks of the COVID-SemiSeg test slices",
                   "fidelity.csv", "fidelity",
                   "Pointing: the map's peak inside a lesion. Energy: the map's share inside lesions. "
                   "Rows of kind `baseline` are what a map with no knowledge of the slice scores.")

measured_table("**Shortcut audit** · does the run read the disease, or where a slice came from?",
               AUDIT_TABLE, "shortcut --data-root DATA",
               "`lungs_blanked_auc`: COVID-CT test AUC from what lies outside the lungs only (a network that reads "
               "the disease stays near 0.5). `lungs_readable_auc`: COVID-CT test AUC without the slices shown in a "
               "soft-tissue window (lungs black; nearly all non-COVID in COVID-CT): what is left when the window "
               "cannot help. `external_sensitivity`: share of the all-COVID COVID-SemiSeg test "
               "slices called COVID at the branch's operating point (COVID-CT validation; the two-step decision's: the "
               "data that choose), beside COVID-CT test specificity at that "
               "point. `pointing`: the branch map's peak inside an expert lesion mask (a flat map scores the "
               "lesion region's area share). `lesion-share`: the segmenter's lesion share of the lung field, "
               "no classifier.")

st.divider()
t1, t2 = st.columns([1.2, 1])
with t1:
    times = rv.timings_table()
    total = rv.timings().get("total")
    st.subheader("Stage timings")
    if times.empty:
        st.caption("This run recorded no timings.")
    else:
        st.caption("Each stage's seconds when it last ran" + (f"; the last `train pipeline` call took {total:.1f} s."
                                                               if total else "."))
        fig = px.bar(times, x="seconds", y="stage", orientation="h", text=times.seconds.map(lambda s: f"{s:.1f} s"))
        fig.update_layout(height=60 + 30 * len(times), margin=dict(l=0, r=0, t=10, b=0), yaxis=dict(autorange="reversed"),
                          yaxis_title=None)
        st.plotly_chart(fig, width="stretch", config=ui.PLOTLY_CONFIG, key="timings")
with t2:
    stages = rv.stage_table()
    if not stages.empty:
        st.subheader("Trained stages")
        st.dataframe(stages, hide_index=True, width="stretch",
                     column_config={"best val AUC": st.column_config.NumberColumn(format="%.3f")})
