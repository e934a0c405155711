"""The "Other hospitals" section of the "Does it look at the disease?" page: RUN/external.json (`train external`,
core.audits.external) as core.results.external_tables prints it, the data that report in front, the data that
chose in a collapsed expander."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.audits.external import CHOOSES, REPORTS, table_rows
from core.knowledge.selection import rule_of, table_text
from core.results.external_tables import (comparison_table, disease_table, disease_title, patient_table,
                                          role_data)
from core.results.predictions import BASELINES
from core.results.window_tables import window_sentence, window_table
from dashboard import data, ui

BASELINE = BASELINES[0]  # lesion-share: shown beside the decision everywhere


def auc_frame(result: dict, role: str, branches: list[str]) -> pd.DataFrame:
    """comparison, branch, auc, low, high of `role`'s two-class comparisons (ui.ci_bars' columns)."""
    rows = [r for r in table_rows(result) if r["role"] == role and r["branch"] in branches and r["auc"] is not None]
    return pd.DataFrame([{"comparison": r["comparison"], "branch": r["branch"], "auc": r["auc"], "low": r["auc_low"],
                          "high": r["auc_high"]} for r in rows], columns=["comparison", "branch", "auc", "low", "high"])


def auc_sentence(frame: pd.DataFrame, comparison: str, decision: str) -> str:
    """'On covid-ct test, **two-step** separates the classes with AUC 0.53 [0.27, 0.81]; lesion-share 0.50.'"""
    part = frame[frame.comparison == comparison].set_index("branch")
    if decision not in part.index:
        return ""
    r = part.loc[decision]
    text = f"On {comparison}, **{decision}** has AUC {r.auc:.2f} [{r.low:.2f}, {r.high:.2f}]"
    if BASELINE in part.index and BASELINE != decision:
        b = part.loc[BASELINE].auc
        text += f"; {BASELINE} {b:.2f}" + (" (the decision falls below it)" if r.auc < b else "")
    return text + "."


def other_hospitals(c: ui.Ctx, label: str = "") -> None:
    """The section for one run (`label` prefixes its lines when two runs are shown)."""
    result = data.external_report(c.runs, c.name, c.stamp)
    if result is None:
        st.info(f"Run `{c.name}` has not been scored on other hospitals yet. Make it with "
                f"`python -m train external --run {c.rv.run.path} --data-root DATA` (DATA holds covid-ct/, semiseg/ "
                "and covid-ct-md/).", icon="🏥")
        return
    decision = c.rv.decision_branch()
    st.markdown(f"{label}**The data that chose** the weights and operating points: {role_data(CHOOSES)}. "
                f"**The data reported here** chose nothing: {role_data(REPORTS)}.")
    frame = auc_frame(result, REPORTS, [decision, BASELINE])
    if not frame.empty:
        st.plotly_chart(ui.ci_bars(frame, "comparison", "auc", "branch", title=f"AUC on the data that report: "
                                   f"{decision} beside {BASELINE}", axis="AUC", refs=((0.5, "chance"),)),
                        width="stretch", config=ui.PLOTLY_CONFIG, key=f"external_auc_{c.name}")
        for comparison in dict.fromkeys(frame.comparison):
            st.markdown(label + auc_sentence(frame, comparison, decision))
    st.markdown(f"{label}**Every branch at its operating point** (an all-COVID set has a sensitivity only)")
    st.dataframe(comparison_table(result, REPORTS), hide_index=True, width="stretch")
    patients = patient_table(result, REPORTS)
    if not patients.empty:
        st.markdown(f"{label}**Per COVID-CT-MD patient**: the scan-level score ({result.get('rule')} of its slices' "
                    "p(COVID)) and the call at each branch's operating point")
        st.dataframe(patients, hide_index=True, width="stretch")
    disease = disease_table(result, REPORTS)
    if not disease.empty:
        st.markdown(f"{label}**{disease_title(result)}**")
        st.dataframe(disease, hide_index=True, width="stretch")
    other_windows(c, decision, label)
    with st.expander(f"The data that chose (not a result): {role_data(CHOOSES)}", expanded=False):
        st.dataframe(comparison_table(result, CHOOSES), hide_index=True, width="stretch")
        for chose in (patient_table(result, CHOOSES), disease_table(result, CHOOSES)):
            if not chose.empty:
                st.dataframe(chose, hide_index=True, width="stretch")
        if result.get("selection"):
            st.markdown(f"**How the two-step decision was chosen** on the same data: {rule_of(result)}.")
            st.dataframe(table_text(result["selection"]), hide_index=True, width="stretch")


def other_windows(c: ui.Ctx, decision: str, label: str = "") -> None:
    """The record on the reported COVID-CT-MD patients in other lung windows (RUN/windows.json)."""
    result = data.windows_report(c.runs, c.name, c.stamp)
    if result is None:
        st.caption(f"{label}In other lung windows: not measured yet. `python -m train windows --run "
                   f"{c.rv.run.path} --data-root DATA`")
        return
    if "unavailable" in result:
        st.caption(f"{label}In other lung windows: not measurable: {result['unavailable']}.")
        return
    st.markdown(f"{label}**In other lung windows**: a hospital exports its slices through its viewer's lung preset, "
                "not through this product's; here the same patients' slices are shown, from their Hounsfield "
                f"units, in {len(result['windows'])} lung windows. " + window_sentence(result, decision))
    st.dataframe(window_table(result, decision), hide_index=True, width="stretch")
