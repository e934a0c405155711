"""Margin review: slices nearest the decision boundary first, filtered (reviewers' verdicts too); each opens in
the Case view, where a verdict is recorded. The verdicts download as CSV."""
import math

import streamlit as st

from core.results.external_tables import chosen_on
from core.trust.slices import OOD_LABEL
from dashboard import data, trust_ui, ui, verdicts_ui
from dashboard.filters import FILTERS, filter_cases

ctx = ui.current()
other = ui.comparison()
df = ctx.df if other is None else data.with_changed(ctx, other)
df, missing = data.with_trust(ctx, df, trust_ui.level())
decision = ctx.rv.decision_branch()

st.title("Margin review")
st.caption(f"Margin = |p - t| of the decision branch ({decision}; t: its operating point, chosen on "
           f"{chosen_on(decision)}): the smallest margins are the slices the model is least sure of.")
f1, f2, f3, f4 = st.columns([1.3, 1.6, 1, 1])
show = f1.selectbox("Show", list(FILTERS), key="margin_show")
splits = f2.multiselect("Split", data.splits(df), default=data.splits(df), key="margin_splits")
disagree = f3.checkbox("branches disagree", key="margin_disagree",
                       help="Only slices where the branches do not all predict the same class")
descending = f4.checkbox("largest margin first", key="margin_desc")
changed = other is not None and st.checkbox(
    f"decision changed in {other.name}", key="margin_changed",
    help="Only slices both runs scored whose decision differs between them")
two_class = st.checkbox(
    f"two-class sets only ({trust_ui.level():.0%})", key="margin_two_class", disabled="set" not in df,
    help=f"Only slices whose prediction set ({decision}, at the level picked in the sidebar) holds both classes: "
         "the network cannot tell them apart there")
for problem in missing:
    st.caption(problem)
if other is not None:
    st.caption(ui.coverage_note(ctx, other))
verdicts = verdicts_ui.latest(ctx)  # None: the database cannot be read (the page says so and goes on)
v1, v2 = st.columns([3.9, 1])
chosen = v1.multiselect("Reviewer's verdict", [verdicts_ui.NO_VERDICT, *verdicts_ui.VERDICTS], key="margin_verdicts",
                        placeholder="any", disabled=verdicts is None)
if verdicts is None:
    verdicts, chosen = {}, []
v2.download_button("Download verdicts CSV", verdicts_ui.csv_of(verdicts), file_name=f"verdicts-{ctx.name}.csv",
                   mime="text/csv", key="margin_csv", width="stretch", on_click="ignore", disabled=not verdicts,
                   help="the verdict in force per slice of this run")

cases = verdicts_ui.by_verdict(filter_cases(df, show, splits, disagree, descending, changed, two_class and "set" in df), verdicts, chosen)
n = len(cases)
st.markdown(f"**{n} {'case' if n == 1 else 'cases'}**" + (f" (of {len(df)})" if n != len(df) else ""))

PER_PAGE = 24
pages = max(1, math.ceil(n / PER_PAGE))
page = 1
if pages > 1:
    page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="margin_page")
shown = cases.iloc[(page - 1) * PER_PAGE: page * PER_PAGE]

COLS = 6
unlike = set(df.key[df.ood.fillna(False).astype(bool)]) if "ood" in df else set()  # NaN: no vector for it
for start in range(0, len(shown), COLS):
    cols = st.columns(COLS)
    for col, r in zip(cols, shown.iloc[start:start + COLS].itertuples()):
        with col.container(border=True):
            st.image(data.thumbnail(ctx.runs, ctx.name, ctx.stamp, r.key), width="stretch")
            colour = "green" if r.correct else "red"
            st.markdown(f"**p = {r.p:.3f}** · :{colour}[{r.outcome}]")
            st.caption(f"{r.key.split('/')[-1]} · {r.split} · margin {r.margin:.3f}"
                       + (f" · set {r.set}" if "set" in df else "") + (f" · 🧭 {OOD_LABEL}" if r.key in unlike else ""))
            if r.key in verdicts:
                st.caption(f"verdict: {verdicts[r.key]['verdict']}")
            if st.button("Open case", key=f"open_{r.key}", width="stretch"):
                ui.open_case(r.key)
if n == 0:
    st.info("No slices match these filters.")
