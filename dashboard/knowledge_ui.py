"""What knowledge says about one slice: its radiological signs (core.knowledge.signs, formatted by
dashboard.data_browser as on the Data page) and, when the run decides in two steps (core.knowledge.decision),
how much of the decision came from each step: p(disease present) x p(looks like COVID-19) against the operating
point. The Case view draws it from the stored predictions, New slice and a scan slice's Case view from a live
analysis."""
from __future__ import annotations

import math

import streamlit as st

from core.audits.external import CHOOSES, REPORTS
from core.knowledge.decision import FACTOR_COLUMNS, Factors, TwoStepDecision
from core.results.external_tables import role_data
from dashboard import data_browser as db

STEP_NAMES = ("disease present", "looks like COVID-19")  # the two factors, in the order of Factors' fields
# the pattern signs the second step weighs (core.knowledge.decision.PATTERN_SIGNS), in words
PATTERN_WORDS = {"peripheral_share": lambda s: f"peripheral {_pct(s.get('peripheral_share'))}",
                 "bilateral": lambda s: "bilateral" if _f(s.get("bilateral")) else "one lung",
                 "ground_glass_share": lambda s: "no lesion to grade" if not _f(s.get("lesion_share"), 0) else (
                     "ground glass not measured" if math.isnan(_f(s.get("consolidation_share"))) else
                     f"ground glass {_pct(1 - _f(s.get('consolidation_share')))}"),
                 "log_lesion_count": lambda s: f"{int(_f(s.get('lesion_count'), 0))} lesion pieces"}


def _f(v, default=math.nan) -> float:
    return default if v is None or v == "" else float(v)


def _pct(v) -> str:
    v = _f(v)
    return "—" if math.isnan(v) else f"{100 * v:.{1 if v < 0.1 else 0}f}%"


def two_step_lines(decision: TwoStepDecision, factors: Factors, signs: dict, p_pattern: float) -> list[str]:
    """The two steps in plain words (Markdown lines): each factor with what it read, the product against the
    operating point, and which step holds the most doubt."""
    t = decision.operating_point
    read = [f"{decision.pattern_branch} {p_pattern:.2f}"] + [PATTERN_WORDS[k](signs) for k in decision.signs
                                                            if k in PATTERN_WORDS]
    weights = {decision.pattern_branch: decision.a_c, **dict(zip(decision.signs, decision.w))}
    unweighed = [k.replace("_", " ") for k, w in weights.items() if w <= 0]
    call = "COVID" if factors.p >= t else "non-COVID"
    doubt = min(range(2), key=lambda i: (factors.disease, factors.pattern)[i])
    return [
        f"1 · **{STEP_NAMES[0]}** p = {factors.disease:.2f} (lesion share {_pct(signs.get('lesion_share'))} "
        "of the lungs)" + ("; the fit gives lesion share no weight" if decision.a_d <= 0 else "")
        # p = D x C with C <= 1: a D under the operating point decides alone
        + ("; under the operating point, so step 1 alone rules COVID-19 out" if factors.disease < t else ""),
        f"2 · **{STEP_NAMES[1]}** p = {factors.pattern:.2f} ({', '.join(read)})"
        + (f"; the fit gives no weight to {', '.join(unweighed)}" if unweighed else ""),
        f"**p(COVID) = {factors.disease:.2f} × {factors.pattern:.2f} = {factors.p:.3f}** → **{call}** "
        f"(operating point {t:.3f})",
        f"The lower factor is step {doubt + 1}, *{STEP_NAMES[doubt]}*: it holds the most doubt about COVID-19.",
    ]


def step_one_record(result: dict | None) -> str | None:
    """How step 1 did against the radiologists' marks on the held-out hospital's patients (external.json's
    disease_step, core.audits.external.disease_report), in one sentence; None before `train external` ran."""
    step = (result or {}).get("disease_step") or {}
    for name, m in (step.get("comparisons") or {}).items():
        if m["role"] == REPORTS and m["n_neg"]:
            return (f"Step 1 on patients that chose nothing ({name.split(':')[0]}): it let "
                    f"{_pct(m['sensitivity'])} of the slices the radiologists marked infected ({m['n_pos']}) through "
                    f"to step 2, and alone cleared {_pct(m['specificity'])} of the others ({m['n_neg']}): below the "
                    f"operating point {step['cut']:.3f} no step 2 can call a slice COVID.")
    return None


def slice_knowledge(decision: TwoStepDecision | None, signs: dict | None, factors: Factors | None,
                    p_pattern: float | None, record: str | None = None) -> None:
    """The signs table beside the two steps (the latter only when the run has the two-step decision); `record`:
    step 1's record on another hospital (`step_one_record`), under the steps."""
    if signs is None and decision is None:
        return
    left, right = st.columns([1, 1.4])
    with left:
        st.markdown("**Radiological signs** (the segmenter's lesions in the lung field)")
        if signs is None:
            st.caption("This run's predictions hold no signs yet (`python -m train pipeline ... --resume` adds them).")
        else:
            st.dataframe(db.signs_table(signs), hide_index=True, width="stretch")
    if decision is None:
        return
    with right:
        st.markdown("**Two steps: is there disease, and does it look like COVID-19?**")
        if factors is None or signs is None or p_pattern is None:
            st.caption("The two factors of this slice are not stored: rerun `python -m train external --run RUN`.")
            return
        for line in two_step_lines(decision, factors, signs, p_pattern):
            st.markdown(line)
        st.caption("Each step is a probability whose inputs can only push one way, as a radiologist reads them "
                   "(more lesion: more likely disease; more peripheral, bilateral ground glass: more likely "
                   f"COVID-19). The weights, the branch step 2 reads ({decision.pattern_branch}) and the operating "
                   f"point were chosen on {role_data(CHOOSES)}.")
        if record:
            st.caption(record)


def stored(decision: TwoStepDecision | None, row, record: str | None = None) -> None:
    """slice_knowledge of a run's slice from its predictions.csv row (the signs, the factors, the pattern
    branch's probability, as the pipeline stored them)."""
    factors = p_pattern = None
    if decision is not None and all(row.get(c, "") != "" for c in FACTOR_COLUMNS):
        factors = Factors(*(float(row[c]) for c in FACTOR_COLUMNS))
        p_pattern = float(row[f"p_{decision.pattern_branch}"])
    slice_knowledge(decision, db.row_signs(row), factors, p_pattern, record)


def live(decision: TwoStepDecision | None, a, record: str | None = None) -> None:
    """slice_knowledge of a live core.inference.SliceAnalysis (at the run's tau)."""
    p_pattern = None if decision is None else a.probs.get(decision.pattern_branch)
    slice_knowledge(decision, None if a.signs is None else a.signs.to_dict(), a.factors, p_pattern, record)
