"""The Scan and New slice pages while the run's classifiers train: what its segmenter alone finds, from the end of
its first round (preliminary, said so) until the run has finished, when each becomes its whole page (the decision,
the maps, the 3D map, the report).

The lesions are measured as the finished run will measure them (core.inference.LesionReader is TrainedRun's first
half); a preliminary segmenter's are replaced on the next rerun after a round, or the stage, ends.
"""
from __future__ import annotations

import streamlit as st

from core.knowledge.scan import SIDES, summarise
from dashboard import data_browser, scan_charts, scans, ui, uploads, waiting
from dashboard import progress_tables as pt
from dashboard.scan_images import slice_pictures


def _training_note(ctx: ui.Ctx, source, what: str, later: str) -> None:
    """Says the run still trains (or stopped), which segmenter reads `what`, and what follows (`later`); reruns the
    page when a round, the stage or the whole run lands."""
    rp = waiting.progress(ctx.runs, ctx.name)
    which = ("its final segmenter" if source.final else
             f"its segmenter as it stands after {data_browser.rounds_text(source.rounds_done)} (preliminary)")
    now = f" (now **{rp.current.stage}**)" if rp.live and rp.current is not None else ""
    state = f"is still training{now}" if rp.live else f"stopped before its classifiers were trained ({pt.RESUME})"
    st.info(f"Run `{ctx.name}` {state}. Until its classifiers are trained, this page shows what {which} finds "
            f"{what}. {later}", icon=":material/hourglass_top:")
    if rp.live:
        waiting.rerun_on_change(lambda: (data_browser.lesion_source(ctx.runs, ctx.name),
                                         waiting.ready(ctx.runs, ctx.name, waiting.COMPLETE)), (source, False))


def _lesions_caption(source) -> str:
    return "lesions (the run's segmenter, p > 0.5)" + ("" if source.final else ", preliminary")


def scan_lesions(ctx: ui.Ctx, scan: scans.ScanInput, series: int, vol) -> None:
    """The lesion burden of series `series` (its Volume `vol`) of `scan`, by the run's segmenter alone."""
    source = data_browser.lesion_source(ctx.runs, ctx.name)  # there: the page waits for it (waiting.LESIONS)
    _training_note(ctx, source, "along the scan: the lesions of each lung",
                   "The scan decision, its decision map and the report follow once the run has finished.")
    try:
        table = scans.lesion_table(ctx.runs, ctx.name, source, scan.digest, series, vol)
    except Exception as exc:  # noqa: BLE001 (a run folder in an unforeseen state: said, not a traceback)
        st.error(f"Run `{ctx.name}`'s segmenter cannot read this scan: {exc}")
        return
    scans.burden(st.columns(3), summarise(table, None), table)

    slice_key = f"scan_slice_{scan.digest[:12]}_{series}"
    if slice_key not in st.session_state:  # the slice with the most lesion
        lesion = table[[f"{s}_lesion_px" for s in SIDES]].sum(axis=1).where(table.lung_found, 0.0).fillna(0.0)
        st.session_state[slice_key] = int(lesion.idxmax()) if lesion.max() > 0 else len(vol) // 2
    st.plotly_chart(scan_charts.lesion_profile(table, st.session_state[slice_key]), width="stretch",
                    config=ui.PLOTLY_CONFIG, key="scan_lesion_profile")
    st.subheader("Slice by slice")
    index = scans.slice_scroller(len(vol), slice_key)
    row = table.iloc[index]
    st.markdown(scans.slice_line(row, index))
    if row.problem:
        st.error(f"This slice could not be read: {row.problem}")
    else:
        pics = scans.lesion_pictures(ctx.runs, ctx.name, source, scan.digest, series, index, vol)
        ui.image_row([(pics["slice"], "the slice (lung window), its lung field outlined in cyan"),
                      (pics["lesion"], _lesions_caption(source))], width=384)
    with st.expander(f"Every slice ({len(table)} rows)"):
        st.dataframe(table, hide_index=True, width="stretch")
        st.download_button("Download the table (CSV)", table.to_csv(index=False).encode(), "scan-lesions.csv",
                           "text/csv", key="scan_lesions_csv", on_click="ignore")


def slice_lesions(ctx: ui.Ctx, raw: bytes, filename: str, slice_index: int | None) -> None:
    """An uploaded slice read by the run's segmenter alone: its lung field, its lesions, its radiological signs."""
    source = data_browser.lesion_source(ctx.runs, ctx.name)  # there: the page waits for it (waiting.LESIONS)
    _training_note(ctx, source, "on the slice: its lung field, its lesions and their radiological signs",
                   "Every branch's probability, the decision, the maps and the slice's place in the 3D map follow "
                   "once the run has finished.")
    try:
        result = _upload_lesions(ctx.runs, ctx.name, source, uploads.digest(raw), slice_index, raw, filename)
    except Exception as exc:  # noqa: BLE001 (a run folder in an unforeseen state: said, not a traceback)
        st.error(f"Run `{ctx.name}`'s segmenter cannot read this slice: {exc}")
        return
    if result.error:
        st.error(result.error)
        return
    a = result.analysis
    st.markdown(f"### `{result.name}`" + (f" · slice {slice_index}" if slice_index is not None else ""))
    if not a.lung_found:
        st.warning(ui.NO_LUNG_FIELD)
    ui.lungs_black_note(a.lungs_black)
    pics = slice_pictures(result.slice01, a, None)
    ui.image_row([(pics["slice"], "uploaded slice, its lung field outlined in cyan"),
                  (pics["lesion"], _lesions_caption(source))], width=384)
    st.markdown("**Radiological signs** (the segmenter's lesions in the lung field)")
    st.dataframe(data_browser.signs_table(a.signs.to_dict()), hide_index=True, width="stretch")


@st.cache_resource(max_entries=4, show_spinner="Reading the slice's lesions...")
def _upload_lesions(runs: str, name: str, source, digest: str, slice_index: int | None, _raw: bytes,
                    filename: str) -> uploads.UploadResult:
    """uploads.analyse_upload with the run's segmenter alone, once per segmenter and file (a rerun replays it)."""
    return uploads.analyse_upload(scans.lesion_reader(runs, name, source), _raw, filename, slice_index)
