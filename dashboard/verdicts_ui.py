"""Reviewers' verdicts on the Case and Margin pages (the store is core/runs/verdicts.py).

Nothing here is cached: a verdict saved in one browser session shows in every other on its next
rerun. A damaged or locked database shows as st.error; the rest of the page goes on.
"""
from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import streamlit as st

from core.runs.verdicts import MAX_NOTE, VERDICTS, VerdictError, VerdictStore, VerdictStoreError, to_csv

NO_VERDICT = "no verdict yet"
REVIEWER = "_reviewer"  # not a widget key: Streamlit drops widget state on pages not shown


def store(ctx, keys=None) -> VerdictStore:
    """The runs folder's store, with `train audit`'s near-duplicates of this run flagged (idempotent);
    `keys`: the run's slices (default: those it scored)."""
    s = VerdictStore.in_runs(ctx.runs)
    s.preflag_from_audit(ctx.runs, ctx.name, set(ctx.df.key) if keys is None else keys)
    return s


def latest(ctx, keys=None) -> dict[str, dict] | None:
    """The verdict in force per slice of the current run; None (and an st.error) when unreadable."""
    try:
        return store(ctx, keys).latest(ctx.name)
    except VerdictStoreError as exc:
        st.error(f"Reviewers' verdicts are unavailable: {exc}")
        return None


def csv_of(verdicts: dict[str, dict]) -> str:
    return to_csv(verdicts[k] for k in sorted(verdicts))


def at_text(at) -> str:
    """A verdict's time (ISO 8601 in UTC, its offset included: core.runs.verdicts) as "2025-01-02 04:56:06 UTC"."""
    try:
        t = datetime.fromisoformat(str(at))
    except ValueError:  # not a time: shown as stored, not hidden
        return str(at)
    return (t if t.tzinfo is None else t.astimezone(timezone.utc)).strftime("%Y-%m-%d %H:%M:%S UTC")


def describe(v: dict) -> str:
    who = "pre-flagged by `train audit`" if v["source"] == "audit" else f"by {v['reviewer']}"
    return f"**{v['verdict']}** · {who} · {at_text(v['at'])}"


def _save(runs: str, run: str, key: str, form_key: str) -> None:
    """Form callback: runs before the page, so the page shows the new verdict at once."""
    ss = st.session_state
    reviewer = ss.get(f"{form_key}_reviewer", "")
    try:
        VerdictStore.in_runs(runs).save(run, key, ss.get(f"{form_key}_verdict_{key}"),
                                        ss.get(f"{form_key}_note_{key}", ""), reviewer)
    except (VerdictError, VerdictStoreError) as exc:
        ss[f"{form_key}_msg"] = ("error", f"Not saved: {exc}")
        return
    ss[REVIEWER] = reviewer.strip()
    ss[f"{form_key}_msg"] = ("success", "Verdict saved.")


def verdict_form(ctx, key: str, form_key: str, keys=None) -> None:
    """The verdict in force for `key`, its history, and a form to record a new one (`keys`: as `store`)."""
    try:
        history = store(ctx, keys).history(ctx.name, key)
    except VerdictStoreError as exc:
        st.error(f"Reviewers' verdicts are unavailable: {exc}")
        return
    kind, msg = st.session_state.pop(f"{form_key}_msg", (None, None))
    if msg:
        (st.success if kind == "success" else st.error)(msg)
    if history:
        st.markdown("Verdict in force: " + describe(history[0]))
        if history[0]["note"]:
            st.caption(history[0]["note"])
        with st.expander(f"history ({len(history)})"):
            st.dataframe(pd.DataFrame(history)[["at", "verdict", "reviewer", "source", "note"]], hide_index=True)
    else:
        st.caption("No verdict yet for this slice in this run.")
    st.session_state.setdefault(f"{form_key}_reviewer", st.session_state.get(REVIEWER, ""))
    with st.form(f"{form_key}_verdict_form"):
        st.radio("Verdict", VERDICTS, index=None, key=f"{form_key}_verdict_{key}")
        st.text_area("Note", key=f"{form_key}_note_{key}", max_chars=MAX_NOTE, height=80)
        st.text_input("Reviewer", key=f"{form_key}_reviewer", max_chars=100)
        st.form_submit_button("Save verdict", key=f"{form_key}_save", on_click=_save,
                              args=(ctx.runs, ctx.name, key, form_key))


def by_verdict(cases: pd.DataFrame, verdicts: dict[str, dict], chosen) -> pd.DataFrame:
    """Rows of `cases` whose verdict in force is among `chosen` (NO_VERDICT: none yet); all when empty."""
    if not chosen:
        return cases
    current = cases.key.map(lambda k: verdicts[k]["verdict"] if k in verdicts else NO_VERDICT)
    return cases[current.isin(list(chosen))]
