"""The Case view of a scan slice (opened from the Scan page, kept in the session as dashboard.scans.ScanCase):
what a live analysis has, as the New slice page draws it: every branch's probability at the run's operating
points, the slice as the run sees it, the tau panel, the lesions, the lung crops and the fusion CAM.

A scan slice has no label and no place in the run's predictions: no truth, no stored probabilities, no
neighbours and no verdict (verdicts are kept per slice of a run's data)."""
from __future__ import annotations

import streamlit as st

from core.runs.feature_cache import CacheError
from dashboard import data, scans, ui


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
    decision = ctx.rv.decision_branch()
    p, t = a.probs[decision], ctx.rv.thresholds[decision]
    st.markdown(f"**{decision}**: p(COVID) = {p:.3f} → **{'COVID' if p >= t else 'non-COVID'}** (operating point "
                f"{t:.3f}, chosen on the validation split; margin {abs(p - t):.3f})")
    try:
        ui.out_of_range_note(ctx.rv, vector)
    except (FileNotFoundError, ValueError, CacheError) as exc:  # a partial run: no stored fusion features
        st.caption(f"No range check of the fusion-layer input: {exc}")
    if not a.lung_found:
        st.warning("No lung field was found on this slice, so the run saw the whole slice: its probabilities "
                   "deserve less trust.")
    left, right = st.columns([1, 1.4])
    left.image(images["slice"], width=300, caption="the slice, as the run sees it")
    with right:
        probs = ui.probs_frame(a.probs, order)
        st.plotly_chart(ui.prob_chart(probs), width="stretch", config=ui.SMALL_CHART_CONFIG, key="scan_case_probs")
        st.dataframe(probs, hide_index=True, width="stretch",
                     column_config={"p(COVID)": st.column_config.NumberColumn(format="%.4f")})

    st.subheader(f"Attention map ({ctx.cam_method}) and the tau crop")

    @st.fragment
    def tau_panel():
        ui.tau_controls(tr, a, None, ctx.tau, "scan_case_tau", order)

    tau_panel()
    st.subheader("Infected regions and the lung crops")
    ui.lesion_row(images, f"fusion CAM (at the run's tau {ctx.tau:.2f})")
