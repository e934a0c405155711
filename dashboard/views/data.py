"""Data: every slice of the run's data root, before any classifier exists. COVID-CT by split, COVID-SemiSeg (labelled
slices with the expert's masks, unlabelled slices), COVID-CT-MD by patient; filtered by source, split or patient,
label, near-duplicate flag and black lungs (a soft-tissue window). Each slice with its lung field and, once round 0
of the run's segmenter has ended, its lesions and radiological signs (preliminary, said so, until the segmenter's
stage ends), and the reviewers' verdicts."""
import math
from pathlib import Path

import streamlit as st

from core.data.catalogue import SOURCES
from core.models.network import SEGMENTER
from core.pictures import data_views
from dashboard import data_browser as db
from dashboard import progress_tables as pt
from dashboard import ui, verdicts_ui, waiting

PER_PAGE, COLS = data_views.PER_PAGE, 6
PRELIMINARY = "Preliminary"  # lesions of the segmenter while its stage trains

ctx = ui.current()
root = ctx.rv.config.get("data_root")
st.title("Data")
if not root or not Path(root).is_dir():
    st.error(f"Run `{ctx.name}` names no data folder that is here (config.json data_root: {root!r}). Pick another "
             "run, or train one on data this machine holds.")
    st.stop()
cat, missing = db.catalogue(root)
lesions = db.lesion_source(ctx.runs, ctx.name)  # None before round 0 of the segmenter has ended
dups = db.near_duplicates(ctx.runs)
st.caption(f"`{root}` (the run's data root) · {len(cat):,} slices. Each slice is shown whole with its lung field "
           "outlined in cyan" + (" and the run's segmenter's lesions in red (p > 0.5) inside it, where the signs "
                                 "count them." if lesions else "."))
if lesions is None or not lesions.final:
    rp = waiting.progress(ctx.runs, ctx.name)
    sp = rp.stage(SEGMENTER)
    line = pt.stage_line(sp, pt.eta_of(rp)) if sp is not None else ""
    if lesions is None:
        st.info(f"Lesions and radiological signs appear here once round 0 of the run's segmenter (stage "
                f"**{SEGMENTER}**) has ended, the final ones once the stage has. " + line,
                icon=":material/hourglass_top:")
    else:
        state = "is still training" if rp.live else f"has not finished ({pt.RESUME})"
        st.info(f"{PRELIMINARY}: the lesions and signs shown are the run's segmenter's after "
                f"{db.rounds_text(lesions.rounds_done)}; stage **{SEGMENTER}** {state}, and its final "
                "lesions replace these when it ends. " + line, icon=":material/hourglass_top:")
    if rp.live:  # a round or the stage's end lands: rerun with the new lesions
        seen = None if lesions is None else lesions.stamp
        waiting.rerun_on_change(lambda: getattr(db.lesion_source(ctx.runs, ctx.name), "stamp", None), seen)
for source, why in missing.items():
    st.caption(f"{source}: not in this data root ({why})")
if cat.empty:
    st.stop()

run_keys = set(cat.key[cat.source == "COVID-CT"])  # the slices the run scores: its verdicts' keys
f1, f2, f3, f4, f5 = st.columns([1.1, 1.9, 1.2, 1.4, 1.3])
source = f1.selectbox("Source", [s for s in SOURCES if s in set(cat.source)], key="data_source")
part = cat[cat.source == source]
groups = f2.multiselect("Patient" if source == "COVID-CT-MD" else "Split", list(dict.fromkeys(part.group)),
                        key=f"data_groups_{source}", placeholder="all")
labels = f3.multiselect("Label", sorted(set(part.label)), key=f"data_labels_{source}", placeholder="all")
audited = dups is not None and source == "COVID-CT"
dup_only = f4.checkbox("near-duplicates only", key="data_dups", disabled=not audited,
                       help="Slices `python -m train audit` found with a near-identical twin (COVID-CT)")
black_only = f5.checkbox("lungs black only", key="data_black",
                         help="Slices shown in a soft-tissue window: their lungs are black, so no step can read them "
                              "(COVID-CT holds 40, most of them non-COVID: a cue of the class, not of the disease). "
                              "The first time, every slice of the source is measured (about 25 s for COVID-CT)")
keep = part.group.isin(groups) if groups else part.group.notna()
if labels:
    keep &= part.label.isin(labels)
if dup_only and audited:
    keep &= part.key.isin(dups)
if black_only:
    keep &= part.key.isin(db.black_lungs(tuple(zip(part.key, part.path))))
shown = part[keep]
n = len(shown)
st.markdown(f"**{n:,} {'slice' if n == 1 else 'slices'}**" + (f" (of {len(part):,} in {source})" if n != len(part) else ""))
if dups is None:
    st.caption(f"Near-duplicates: `python -m train audit --data-root DATA --out {ui.runs_dir_label(ctx.runs)}/audit.json` "
               "flags them here.")
if not n:
    st.info("No slice matches these filters.")
    st.stop()

verdicts = verdicts_ui.latest(ctx, run_keys) or {}
keys = list(shown.key)
if st.session_state.get("data_key") not in keys:
    st.session_state["data_key"] = keys[0]
key = st.session_state["data_key"]
row = shown.set_index("key").loc[key]
view = db.slice_view(ctx.runs, ctx.name, row.path, row["mask"], lesions)

st.subheader(f"`{key}`")
st.markdown(f"{source} · {row.group} · **{row.label}**" + (f" · patient {row.patient}" if row.patient else "")
            + (f" · {row.note}" if row.note else ""))
if dups and key in dups:
    st.warning(f"Near-duplicate: {dups[key]}", icon=":material/content_copy:")
ui.file_lungs_black_note(row.path)
c1, c2, c3, c4 = st.columns(4)
c1.image(view["slice"], caption="the slice", width="stretch")
c2.image(view["field"], width="stretch", caption="lung field" + (" (with the segmenter's lesions that touch it)"
                                                                 if view["lungs_with_lesions"] else "")
         + ("" if view["found"] else ": none found, the whole slice stands for it"))
if view["lesion"] is not None:
    c3.image(view["lesion"], width="stretch", caption="lesions: the run's segmenter (p > 0.5)"
             + ("" if lesions.final else f", {PRELIMINARY.lower()} (after {db.rounds_text(lesions.rounds_done)})")
             + ("" if view["lesion_found"] else ": none found"))
else:
    c3.caption(f"lesions: once round 0 of the segmenter ({SEGMENTER}) has ended")
if view["expert"] is not None:
    c4.image(view["expert"], caption="the expert's infection mask (yellow)", width="stretch")
if view["signs"] is not None:
    s1, s2 = st.columns([1.3, 1])
    s1.markdown("**Radiological signs** (core.knowledge.signs: the segmenter's lesions in the lung field)"
                + ("" if lesions.final else f" · {PRELIMINARY.lower()}"))
    s1.dataframe(db.signs_table(view["signs"]), hide_index=True, width="stretch")
    target = s2
else:
    target = st.container()
with target:
    st.markdown("**Reviewers' verdict**")
    verdicts_ui.verdict_form(ctx, key, "data", keys=run_keys)


def _show(k: str) -> None:
    st.session_state["data_key"] = k


st.divider()
pages = max(1, math.ceil(n / PER_PAGE))
page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="data_page") if pages > 1 else 1
on_page = shown.iloc[(page - 1) * PER_PAGE: page * PER_PAGE]
with st.spinner("Finding the lung fields of the slices on this page..."):
    cards = {r.key: db.slice_view(ctx.runs, ctx.name, r.path, r.mask, lesions) for r in on_page.itertuples()}
for start in range(0, len(on_page), COLS):
    for col, r in zip(st.columns(COLS), on_page.iloc[start:start + COLS].itertuples()):
        with col.container(border=True):
            st.image(cards[r.key]["card"], width="stretch")
            st.caption(f"{r.key.split('/')[-1]} · {r.group} · {r.label}"
                       + (" · near-duplicate" if dups and r.key in dups else "")
                       + (f" · verdict: {verdicts[r.key]['verdict']}" if r.key in verdicts else ""))
            st.button("Show", key=f"data_show_{r.key}", on_click=_show, args=(r.key,), width="stretch",
                      type="primary" if r.key == key else "secondary")
