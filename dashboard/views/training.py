"""Training: every stage of the run epoch by epoch (training loss, validation AUC and loss, images per second, the
best epoch, the early-stopping state) and the ETA of each stage and of the run, from the run's progress log
(core.runs.progress; a run trained before the log: its stage folders). Live while the run trains, kept after;
a second run picked in the sidebar ("Compare with") is shown beside it, trained or not."""
import time

import streamlit as st

from dashboard import progress_tables as pt
from dashboard import ui, waiting

ctx = ui.current()
names = [ctx.name, *[n for n in [ui.comparison_name()] if n]]

st.title(f"Training · {ctx.name}")
st.caption("Every stage writes one row per epoch into the run's progress log (progress.jsonl): validation AUC and "
           "loss on COVID-CT's validation split, the epoch with the best validation AUC (the one kept) and how many "
           "more epochs without a better one stop the stage early. The segmenter (Algorithm 1) has no validation "
           "split: it logs its loss per round. ETAs: the epochs left times the recent epoch times; stages not started "
           "from the speed of the stages of their kind that have run (core/runs/eta.py).")
COLUMNS = {"best epoch": st.column_config.NumberColumn(width="small"),
           "best val AUC": st.column_config.NumberColumn(format="%.3f", width="small"),
           "img/s": st.column_config.NumberColumn(format="%.1f", width="small"),
           "time": st.column_config.TextColumn(width="small"), "state": st.column_config.TextColumn(width="small"),
           "epochs": st.column_config.TextColumn(width="medium"), "ends in": st.column_config.TextColumn(width="medium")}
EPOCH_COLUMNS = {c: st.column_config.NumberColumn(format="%.4f") for c in ("train loss", "val loss")} | {
    "val AUC": st.column_config.NumberColumn(format="%.3f"), "val acc": st.column_config.NumberColumn(format="%.3f"),
    "img/s": st.column_config.NumberColumn(format="%.1f"), "seconds": st.column_config.NumberColumn(format="%.1f")}


def pick_stage(stages: list[str], following: str) -> str:
    """The stage shown: the user's pick, else the one training now (followed as the run moves on)."""
    auto = st.session_state.get("_training_stage_auto")
    if st.session_state.get("training_stage") in (None, auto) or st.session_state["training_stage"] not in stages:
        st.session_state["training_stage"] = following
    st.session_state["_training_stage_auto"] = following
    return st.segmented_control("Stage", stages, key="training_stage") or following


def body() -> None:
    now = time.time()
    progs = {n: waiting.progress(ctx.runs, n) for n in names}
    if st.session_state.get("_training_live") and not any(rp.live for rp in progs.values()):
        st.rerun()  # the training ended: show the page once more, without refreshing it
    etas = {n: pt.eta_of(rp, now) for n, rp in progs.items()}
    for col, (n, rp) in zip(st.columns(len(names)), progs.items()):
        with col:
            if len(names) > 1:
                st.subheader(n)
            st.markdown(pt.run_line(rp, etas[n], now))
            if rp.damaged:
                st.caption(f"{rp.damaged} line(s) of the log could not be read (a write cut off by a kill); "
                           "the rest is shown.")
            if rp.stages:
                st.dataframe(pt.stage_table(rp, etas[n]), hide_index=True, width="stretch", column_config=COLUMNS)
    main = progs[ctx.name]
    stages = list(dict.fromkeys(s for rp in progs.values() for s in rp.stages))
    if not stages:
        st.info("No stage has been planned yet: the training is reading the data.")
        return
    trained = [s.stage for s in main.stages.values() if s.rows]
    # live: the stage training now (or the last one, between stages); else the first
    following = main.current.stage if main.current else (trained[-1 if main.live else 0] if trained else stages[0])
    stage = pick_stage(stages, following)
    by_run = {n: rp.stage(stage) for n, rp in progs.items() if rp.stage(stage) is not None}
    for n, sp in by_run.items():
        st.markdown((f"`{n}` · " if len(names) > 1 else "") + pt.stage_line(sp, etas[n], now))
    shown = {n: sp for n, sp in by_run.items() if sp.rows}
    if not shown:
        st.info(f"{stage} has no epoch yet.")
        return
    st.plotly_chart(pt.curves(stage, shown, ui.RUN_COLOURS), width="stretch", config=ui.PLOTLY_CONFIG,
                    key="training_curves")
    for col, (n, sp) in zip(st.columns(len(shown)), shown.items()):
        with col:
            st.markdown(f"**{stage}** · {n} · one row per epoch" + (" (read from its stage folder)"
                                                                   if sp.source == "files" else ""))
            st.dataframe(pt.epoch_table(sp), hide_index=True, width="stretch", column_config=EPOCH_COLUMNS)
    tail = pt.output_tail(ctx.rv.run.path)
    if tail:
        with st.expander("The training's output (the end of train.out)"):
            st.code(tail, language=None)


live = any(waiting.progress(ctx.runs, n).live for n in names)
st.session_state["_training_live"] = live
if live:
    st.fragment(run_every=waiting.REFRESH_S)(body)()
else:
    body()
