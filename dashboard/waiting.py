"""What each page needs of a run, and what a page shows while the run trains towards it.

A run is listed as soon as its training starts (core.runs.run_view.list_runs), so a page may open on a run
that lacks what it reads. app.py asks `ready` before running a page; when the answer is no, `panel` says
which stage the page waits for, how far that stage is and when it is expected (core.runs.eta), and reruns
the app as soon as the stage lands (a fragment that rereads the progress log every few seconds while the
run trains; a button otherwise). Never a traceback.
"""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import streamlit as st

from core.after_training import KIND as AFTER_TRAINING
from core.models.network import SEGMENTER
from core.pictures.data_views import lesion_source
from core.results.predictions import BASELINES
from core.runs.progress import FAILED, FINISHED, STARTING, WAITING, RunProgress
from core.runs.run_view import RunView
from core.runs.runfolder import RunFolder, safe_child
from dashboard import progress_tables as pt

NOTHING, LESIONS, PREDICTIONS, COMPLETE = "nothing", "lesions", "predictions", "complete"
# LESIONS: the run's segmenter, final or after its first round (core.pictures.data_views.lesion_source)
REFRESH_S = 5  # how often a page waiting on a training run rereads its progress
TRAINING_PAGE = "views/training.py"
# What a page that waits on a stage shows once it opens mid-training (the waiting panel's links to it), by title
OPEN_ALREADY = {"New slice": "upload a slice: its lung field, lesions and radiological signs",
                "Scan": "a whole CT scan: the lesions of each lung, slice by slice",
                "Overview": "the metric tables of the branches trained so far",
                "Does it look at the disease?": "the branches trained so far against the lesions",
                "Margin review": "the slices nearest the first branches' operating points"}


def progress(runs: str, name: str) -> RunProgress:
    """The run's progress, read afresh (a small file; the state depends on whether its process still runs)."""
    return RunProgress.read(safe_child(runs, name))


def has_predictions(run_path: Path) -> bool:
    """predictions.csv holds a classifier branch for every slice (the first stage's, at least)."""
    try:
        df = pd.read_csv(run_path / "predictions.csv", keep_default_na=False)
    except (OSError, ValueError):
        return False
    return len(df) > 0 and any(b not in BASELINES for b in RunView.branches_in(df))


def ready(runs: str, name: str, need: str) -> bool:
    if need == NOTHING:
        return True
    path = safe_child(runs, name)
    if need == LESIONS:
        return lesion_source(RunFolder(path)) is not None
    if need == PREDICTIONS:
        return has_predictions(path)
    return has_predictions(path) and trained(progress(runs, name))


def trained(rp: RunProgress) -> bool:
    """The run has finished, or its stages after training (core.after_training: audits, precompute) have begun:
    those start after the fusion CAM is stored, so every trained model and map a page reads is there."""
    return rp.state == FINISHED or any(s.kind == AFTER_TRAINING and s.state != WAITING for s in rp.stages.values())


def awaited(rp: RunProgress, need: str) -> str:
    """The stage a page with `need` waits for: the segmenter, the first classifier stage, or the run's last training
    stage."""
    stages = [s for s in rp.stages.values() if s.kind != AFTER_TRAINING]
    if need == LESIONS:
        return SEGMENTER
    if need == PREDICTIONS:
        return next((s.stage for s in stages if s.kind == "image"), "global")
    return stages[-1].stage if stages else "fusion"


def training_note(runs: str, name: str) -> None:
    """On a page open on a run still training: it shows what exists so far."""
    rp = progress(runs, name)
    if rp.live:
        now = f" (now {rp.current.stage})" if rp.current else ""
        st.info(f"Run `{name}` is still training{now}: this page shows the branches trained so far and gains the "
                "others as they land (on the next rerun). The Training page follows every stage.",
                icon=":material/monitoring:")


def panel(runs: str, name: str, need: str, title: str, pages=()) -> None:
    """The page `title` in place: what it waits for, the state of the training, and which of `pages` ((st.Page,
    need) pairs, app.py's) open already. Reruns the app when ready."""
    st.title(title)
    rp = progress(runs, name)
    body = lambda: _status(runs, name, need, title, pages)
    if rp.live:
        st.fragment(run_every=REFRESH_S)(body)()
    else:
        body()
        if st.button("Check again", key="waiting_check_again"):
            st.rerun()


def rerun_on_change(read, seen) -> None:
    """On a page open on a run in training: rerun the app as soon as `read()` no longer gives `seen` (checked every
    REFRESH_S seconds)."""
    def check():
        if read() != seen:
            st.rerun()

    st.fragment(run_every=REFRESH_S)(check)()


def _status(runs: str, name: str, need: str, title: str, pages) -> None:
    if ready(runs, name, need):
        st.rerun()
    # The pages that waited on a stage that has landed (those that need nothing are always open); each need's
    # files read once, not once a page
    landed = {n: ready(runs, name, n) for n in {n for _, n in pages} | {LESIONS} if n != NOTHING}
    now_open = [p for p, n in pages if n != NOTHING and p.title != title and landed[n]]
    rp = progress(runs, name)
    now = time.time()
    eta = pt.eta_of(rp, now)
    stage = awaited(rp, need)
    whole = {COMPLETE: "the whole pipeline, up to its last stage ", LESIONS: "the first round of "}.get(need, "")
    st.info(f"**{title}** needs {whole}**{stage}** ({pt.STAGE_NAMES.get(stage, 'a stage')}) of run `{name}`, "
            "which is not trained yet.", icon=":material/hourglass_top:")
    sp = rp.stage(stage)
    if rp.state == STARTING or sp is None:
        st.markdown(pt.run_line(rp, eta, now))
    else:
        st.markdown(pt.stage_line(sp, eta, now))
        cur = rp.current
        if rp.live and cur is not None and cur.stage != stage:
            st.markdown("Now: " + pt.stage_line(cur, eta, now))
        st.markdown(pt.run_line(rp, eta, now))
    if rp.state == FAILED:
        tail = pt.output_tail(safe_child(runs, name))
        if tail:
            st.code(tail, language=None)
    if now_open:
        st.markdown(f"Open already on run `{name}`" + (" (the Data page shows the segmenter's lesions too)" if
                                                        landed[LESIONS] else "") + ":")
        for p in now_open:
            st.page_link(p, label=p.title + (f": {OPEN_ALREADY[p.title]}" if p.title in OPEN_ALREADY else ""),
                         icon=p.icon)
    st.page_link(TRAINING_PAGE, label="Follow every stage on the Training page", icon=":material/monitoring:")
