"""Margin review: slices nearest the decision boundary first, filtered; each opens in the Case view."""
import math

import streamlit as st

from dashboard import data, ui
from dashboard.filters import FILTERS, filter_cases

ctx = ui.current()
df = ctx.df
decision = ctx.rv.decision_branch()

st.title("Margin review")
st.caption(f"Margin = |p - t| (t: the operating point chosen on the validation split) of the decision branch ({decision}): the smallest margins are the slices the "
           "model is least sure of.")
f1, f2, f3, f4 = st.columns([1.3, 1.6, 1, 1])
show = f1.selectbox("Show", list(FILTERS), key="margin_show")
splits = f2.multiselect("Split", data.splits(df), default=data.splits(df), key="margin_splits")
disagree = f3.checkbox("branches disagree", key="margin_disagree",
                       help="Only slices where the branches do not all predict the same class")
descending = f4.checkbox("largest margin first", key="margin_desc")

cases = filter_cases(df, show, splits, disagree, descending)
n = len(cases)
st.markdown(f"**{n} cases**" + (f" (of {len(df)})" if n != len(df) else ""))

PER_PAGE = 24
pages = max(1, math.ceil(n / PER_PAGE))
page = 1
if pages > 1:
    page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="margin_page")
shown = cases.iloc[(page - 1) * PER_PAGE: page * PER_PAGE]

COLS = 6
for start in range(0, len(shown), COLS):
    cols = st.columns(COLS)
    for col, r in zip(cols, shown.iloc[start:start + COLS].itertuples()):
        with col.container(border=True):
            st.image(data.thumbnail(ctx.runs, ctx.name, ctx.stamp, r.key), width="stretch")
            colour = "green" if r.correct else "red"
            st.markdown(f"**p = {r.p:.3f}** · :{colour}[{r.outcome}]")
            st.caption(f"{r.key.split('/')[-1]} · {r.split} · margin {r.margin:.3f}")
            if st.button("Open case", key=f"open_{r.key}", width="stretch"):
                ui.open_case(r.key)
if n == 0:
    st.info("No slices match these filters.")
