"""Can this map, this decision, this slice be trusted? The pieces the pages share (core.trust computes, the cached
helpers in dashboard.data read): the prediction-set level picked in the sidebar, a CAM method's label in every
picker (flagged with the sanity checks it fails), the map verdicts as plain sentences, one slice's prediction
set and out-of-distribution flag, and how far a scan's call can be trusted."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.trust import verdicts
from core.trust.conformal import LEVEL, describe
from core.trust.image_check import SliceStatistics
from core.trust.map_checks import DEFAULT_SLICES
from core.trust.models import FUSION_CAM
from core.trust.ood import FLAG_COLUMN
from core.trust.ood import describe as describe_flag
from core.trust.scan_call import CallTrust
from core.trust.slices import OOD_LABEL, SET_LABELS, coverage_table, flag_table
from dashboard import data

LEVELS = tuple(sorted({0.80, 0.85, LEVEL, 0.95, 0.99}))  # the levels the sidebar offers, the default among them
LEVEL_KEY = "set_level"
MARKS = {True: ":green[✓]", False: ":orange[⚠]", None: "·"}  # a verdict: passed, failed, not measured


def level_picker() -> None:
    """The prediction-set level (sidebar): every page's sets follow it."""
    st.session_state.setdefault(LEVEL_KEY, LEVEL)
    st.select_slider("Prediction-set level", LEVELS, key=LEVEL_KEY, format_func=lambda v: f"{v:.0%}",
                     help="Each slice's prediction set holds every class the network cannot rule out at this level: "
                          "on slices like the validation slices, the set holds the true class at least this often, "
                          "class by class. Two classes: the network cannot tell them apart on this slice.")


def level() -> float:
    return float(st.session_state.get(LEVEL_KEY, LEVEL))


# ---- maps ---------------------------------------------------------------------------------------------------
def maps_rows(ctx) -> list[dict] | None:
    """The maps part's rows of the run's trust.json, or None when it was not measured."""
    maps = data.trust(ctx.runs, ctx.name, ctx.stamp).get("maps")
    return maps.get("rows") if isinstance(maps, dict) else None


def _branch_of(rows, method: str) -> str:
    """The branch the maps part measured `method` on (the global branch's CAMs, the decision branch's fusion CAM)."""
    return next((r["branch"] for r in rows or [] if r["method"] == method), "global")


def method_label(ctx, method: str, branch: str | None = None) -> str:
    """A CAM method's name wherever one is picked or named, flagged with the sanity checks it fails."""
    rows = maps_rows(ctx)
    return verdicts.label(rows, branch or _branch_of(rows, method), method)


def fusion_cam_label(ctx) -> str:
    return method_label(ctx, FUSION_CAM)


def maps_missing(ctx) -> bool:
    """Say so, naming the command, when the run's map sanity checks are not measured (or are stale): True if absent."""
    rows = maps_rows(ctx)
    command = f"python -m train trust --run {ctx.rv.run.path} --parts maps --data-root DATA"
    if rows is None:
        st.info(f"The map sanity checks of `{ctx.name}` are not measured yet (its trust.json has no maps part). "
                f"Measure them with `{command}` (DATA holds semiseg/; about a minute a slice on a CPU).", icon="🧪")
        return True
    if data.maps_stale(ctx.runs, ctx.name, ctx.stamp):
        st.warning(f"The map sanity checks of `{ctx.name}` were measured before its models were last retrained: "
                   f"measure them again with `{command}`.")
    return False


def map_verdicts(ctx, method: str, branch: str | None = None) -> None:
    """Each test's verdict of one method in a plain sentence, and how many slices they rest on."""
    rows = maps_rows(ctx)
    for v in verdicts.verdicts(rows or [], branch or _branch_of(rows, method), method):
        st.markdown(f"{MARKS[v.passed]} {v.sentence}")
    n = data.trust(ctx.runs, ctx.name, ctx.stamp).get("maps", {}).get("n_slices")
    if rows and n:
        st.caption(verdicts.basis(n, DEFAULT_SLICES, f"python -m train trust --run {ctx.rv.run.path} --parts maps "
                                                     "--data-root DATA"))


def verdict_table(rows) -> pd.DataFrame:
    """branch, method, test, verdict, value, against: every method and baseline, test by test."""
    return pd.DataFrame([{"branch": v.branch, "method": verdicts.title(v.method), "test": v.test,
                          "verdict": {True: "pass", False: "FAIL", None: "not measured"}[v.passed], "value": v.value,
                          "against": None if v.reference is None else f"{verdicts.name(v.reference)} ({v.reference_value:.3f})"}
                         for v in verdicts.verdicts(rows)])


# ---- one slice's decision -----------------------------------------------------------------------------------
def slice_trust(ctx, p: float | None, vector: np.ndarray | None, statistics: SliceStatistics | None) -> None:
    """One slice's prediction set (the decision branch's, at the sidebar's level) and its out-of-distribution flag
    (`vector`: its standardised fusion-layer input, `statistics`: its image check (core.trust.image_check); None:
    the run has none for it), in plain words."""
    decision, lv = ctx.rv.decision_branch(), level()
    try:
        sets = data.prediction_sets(ctx.runs, ctx.name, ctx.stamp, decision, lv)
    except data.TRUST_ERRORS as exc:
        st.caption(f"No prediction set: {exc}")
    else:
        if p is not None:
            names = sets.set_of(float(p))
            text = f"**Prediction set** ({decision}, {lv:.0%}): **{SET_LABELS[names]}**. {describe(names, lv)}"
            (st.markdown if len(names) == 1 else st.warning)(text)
    if vector is None or statistics is None:
        missing = "fusion-layer input" if vector is None else "image statistics"
        st.caption(f"No out-of-distribution flag: the run has no {missing} for this slice.")
        return
    try:
        flag = data.ood_flag(ctx.runs, ctx.name, ctx.stamp, data.ood_alpha(ctx.runs, ctx.name, ctx.stamp))
        row = flag.assess(vector, [statistics]).iloc[0]
    except data.TRUST_ERRORS as exc:
        st.caption(f"No out-of-distribution flag: {exc}")
        return
    words = describe_flag(row)
    if row[FLAG_COLUMN]:
        st.warning(f"**{OOD_LABEL[0].upper() + OOD_LABEL[1:]}.** {words}", icon="🧭")
    else:
        st.caption(words)


# ---- per source (the "Does it look at the disease?" page) -------------------------------------------------------
def decision_tables(ctx) -> None:
    """Coverage and two-class share of the prediction sets, and the flag rate, per source and class; the flag rate
    on inputs that are no chest CT when `train trust` measured it."""
    decision, lv = ctx.rv.decision_branch(), level()
    external = data.external_rows(ctx.runs, ctx.name, ctx.stamp)
    try:
        sets = data.prediction_sets(ctx.runs, ctx.name, ctx.stamp, decision, lv)
        table = coverage_table(sets, decision, ctx.df, external)
    except data.TRUST_ERRORS as exc:
        st.caption(f"No prediction sets for `{ctx.name}`: {exc}")
    else:
        counts = ", ".join(f"{n} {c}" for c, n in sets.counts.items())
        st.markdown(f"**Prediction sets** of **{decision}** at **{lv:.0%}** (the level picked in the sidebar), "
                    f"calibrated class by class on COVID-CT's validation split ({counts}): on slices drawn like "
                    f"those, each class's set holds that class at least {lv:.0%} of the time. **Coverage is expected "
                    "to fall on slices from other hospitals**, which the calibration never saw: there a one-class "
                    "set is less sure than it looks.")
        st.dataframe(table, hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.3f")
                                    for c in ("coverage", "two-class share", "empty share")})
        if sets.always_in:
            st.warning(f"Too few validation slices of class {', '.join(sets.always_in)} for {lv:.0%}: every set holds "
                       "it, so the sets say nothing at this level. Pick a lower level in the sidebar.")
        short = table[table.coverage < lv]
        if len(short):
            worst = short.loc[short.coverage.idxmin()]
            st.markdown(f"Below {lv:.0%}: {len(short)} of {len(table)} rows; the lowest, {worst.source} · "
                        f"{worst['class']}, covers {worst.coverage:.0%} of its {worst.n} slices.")
    if external is None:
        st.info("The external sources (COVID-SemiSeg test, COVID-CT-MD) are not scored yet for this run (it has no "
                "external.csv): COVID-CT test only.", icon="🏥")
    try:
        flag = data.ood_flag(ctx.runs, ctx.name, ctx.stamp, data.ood_alpha(ctx.runs, ctx.name, ctx.stamp))
        flags = data.slice_flags(ctx.runs, ctx.name, ctx.stamp, data.ood_alpha(ctx.runs, ctx.name, ctx.stamp))
        rates = flag_table(flags, ctx.df, external)
    except data.TRUST_ERRORS as exc:
        st.caption(f"No out-of-distribution flag for `{ctx.name}`: {exc}")
        return
    st.markdown(f"**Out-of-distribution flag** (\"{OOD_LABEL}\"): {flag.rule()}.")
    st.dataframe(rates, hide_index=True, width="stretch",
                 column_config={"flagged": st.column_config.NumberColumn(format="%.3f")})
    if external is not None and FLAG_COLUMN not in external:
        st.caption(f"The external slices were scored without the flag (no column {FLAG_COLUMN}): their flag rate is "
                   "not shown; `python -m train external --run RUN` scores them again.")
    probes = (data.trust(ctx.runs, ctx.name, ctx.stamp).get("ood") or {}).get("probe_flag_rate_by_kind")
    if probes:
        st.markdown("Flagged among inputs that are no chest CT (`train trust`): "
                    + ", ".join(f"{kind} {rate:.0%}" for kind, rate in probes.items()) + ".")
    else:
        st.caption("The flag on inputs that are no chest CT (photographs, lungless phantoms, noise, text) is not "
                   f"measured yet: `python -m train trust --run {ctx.rv.run.path} --parts ood`.")


# ---- a scan's call (the Scan page) -------------------------------------------------------------------------------
def scan_call(call: CallTrust) -> None:
    """How far a scan's call can be trusted (core.trust.scan_call), in plain words under the decision: a warning
    when the call turns with the rule's constant or rests on slices unlike the training ones."""
    lines = "\n".join(f"- {line}" for line in call.lines())
    if call.steady is False or call.flagged_top:
        st.warning(f"**How far to trust this call**\n{lines}", icon="🧭")
    else:
        st.markdown(f"**How far to trust this call**\n{lines}")
