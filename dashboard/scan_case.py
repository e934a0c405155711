"""The Case view of a scan slice (opened from the Scan page, kept in the session as dashboard.scans.ScanCase):
what a live analysis has, as the New slice page draws it: every branch's probability at the run's operating
points, the slice as the run sees it, the tau panel, the lesions, the lung crops and the fusion CAM.

A scan slice has no label and no place in the run's predictions: no truth, no stored probabilities, no
neighbours and no verdict (verdicts are kept per slice of a run's data)."""
from __future__ import annotations

import streamlit as st

from dashboard import data, scans, trust_ui, ui


def _back() -> None:
    st.session_state.pop(ui.SCAN_CASE, None)


def show(ctx: ui.Ctx, case: scans.ScanCase) -> None:
    order = data.branches(ctx.df)
    st.title("Case view")
    st.markdown(f"### {case.title}")
    st.caption(f"A slice of a scan from the Scan page (`{case.file.rsplit('/', 1)[-1]}`), analysed live by run "
               f"{ctx.name}." + (f" The scan's diagnosis on file: {case.truth} (a scan label, not this slice's)."
                                 if case.truth else ""))
    st.button("Back to the run's slices", key="scan_case_back", on_click=_back, icon=":material/arrow_back:")
    try:
        tr = ctx.trained()
        a, vector, images = scans.case_analysis(ctx.runs, ctx.name, ctx.stamp, case.digest, case.series, case.index,
                                                case.slice01)
    except Exception as exc:  # noqa: BLE001 (a partial run or a slice it cannot read: said, not a traceback)
        st.error(f"Run `{ctx.name}` cannot analyse this slice: {exc}")
        return
    ui.live_analysis(ctx, tr, a, images, vector, order, "scan_case", "the slice, as the run sees it",
                     f"{trust_ui.fusion_cam_label(ctx)} (at the run's tau {ctx.tau:.2f})", case.slice01)
