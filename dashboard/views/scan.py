"""Scan: a whole CT scan (a DICOM series: its files, a .zip of them, a hospital's export folder; a NIfTI volume; or a
COVID-CT-MD patient) scored slice by slice with the run; the scan-level decision, how far it can be trusted
(core.trust.scan_call), the opacity per lung, where along the scan the disease lies, a slice scroller with the maps
of the slice shown, the slices that drive the decision, a report. While the run's classifiers train, from the end of
its segmenter's first round, the lesions alone (dashboard.lesions_ui)."""
import math

import streamlit as st

from core.knowledge.scan import RULE, summarise
from core.trust import scan_call
from dashboard import data, lesions_ui, scan_charts, scan_report_ui, scans, trust_ui, ui, waiting

ctx = ui.current()

st.title("Scan")
st.caption("Clinicians read scans, not slices. Every slice of the scan is scored by the selected run with its own "
           "preprocessing; the page reports the scan as a whole. Uploaded files are read in memory: their names "
           "are only shown.")

data_root = ctx.rv.config.get("data_root")
patients = scans.ctmd_patients(data_root)
UPLOAD, PATIENT = "Upload a scan", "COVID-CT-MD patient"
source = st.radio("Scan", [UPLOAD, PATIENT], horizontal=True, key="scan_source") if patients else UPLOAD
if source == UPLOAD:
    FILES, FOLDER = "Files or a .zip", "A folder"
    how = st.radio("Upload", [FILES, FOLDER], horizontal=True, key="scan_upload_how",
                   help="A folder as a hospital exports a study (a CD's or a PACS export's, subfolders and DICOMDIR "
                        "included): every file in it is read, and its series are told apart by their UIDs")
    if how == FILES:
        ups = st.file_uploader("A DICOM series (its files, a .zip of them, or one Enhanced CT file) or a NIfTI volume "
                               f"(.nii, .nii.gz); up to {ui.upload_limit_mb()} MB a file", accept_multiple_files=True,
                               key="scan_upload")
    else:
        ups = st.file_uploader(f"A folder holding a CT study's DICOM files; up to {ui.upload_limit_mb()} MB a file",
                               accept_multiple_files="directory", key="scan_folder")
    if not ups:
        st.info("Upload the files of one CT series (or a .zip of them, or its Enhanced CT file), or a NIfTI volume, "
                "to score the whole scan."
                + (" Or pick a COVID-CT-MD patient above." if patients else ""))
        st.stop()
    files = tuple((u.name, u.getvalue()) for u in ups)
    scan = scans.upload_input(scans.digest_of(list(files)), files)
else:
    patient = st.selectbox("Patient", list(patients), format_func=patients.get, key="scan_patient",
                           help="COVID-CT-MD under the run's data root: the selection patients may choose settings, "
                                "the report patients are only reported")
    scan = scans.patient_input(str(data_root), patient)


def files_not_read(rejected: list[str]) -> None:
    """Past MAX_NAMED unread files (a hospital CD's viewer and its files, say), every one under an expander."""
    if len(rejected) > ui.MAX_NAMED:
        with st.expander(f"Files not read ({len(rejected)})"):
            st.text("\n".join(rejected))


if scan.error:
    st.error(scan.error)
    for line in scan.rejected[:ui.MAX_NAMED]:
        st.caption(line)
    files_not_read(scan.rejected)
    st.stop()

series = 0
if len(scan.volumes) > 1:
    series = st.selectbox("Series", range(len(scan.volumes)), key=f"scan_series_{scan.digest[:12]}",
                          format_func=lambda i: f"{scan.volumes[i].series_uid or 'no UID'} · "
                                                f"{scans.slices_text(len(scan.volumes[i]))}"
                                                + ("" if scan.volumes[i].axial else f" · {scan.volumes[i].plane}")
                                                + (" (read first)" if i == 0 else ""))
vol = scan.volumes[series]
notes = [p for p in vol.problems if p != vol.not_axial()] + vol.notes + [str(e) for e in vol.left_out] \
    + scan.rejected[:ui.MAX_NAMED]
if len(scan.rejected) > ui.MAX_NAMED:  # a hospital CD's viewer program and its files, say
    notes.append(f"and {len(scan.rejected) - ui.MAX_NAMED} more files not read, each named under \"Files not read\"")
st.markdown(f"### {scan.name}")
files_given = f"{scan.given} file{'' if scan.given == 1 else 's'} given"
st.markdown(f"**{scans.slices_text(len(vol))}** in the series, read from **{files_given}**"
            + (f" ({scan.given - len(vol)} not in it, named below)" if scan.given > len(vol) else "")
            + f" · ordered by {vol.ordering}"
            + ("" if vol.slice_spacing is None else f" · {vol.slice_spacing:g} mm apart")
            + ("" if vol.pixel_spacing is None else " · pixels {:.3g} x {:.3g} mm".format(*vol.pixel_spacing)))
if notes:
    st.warning("\n".join(f"- {line}" for line in notes), icon="📋")
files_not_read(scan.rejected)
if not vol.axial:
    axial_given = any(v.axial for v in scan.volumes)
    st.error(vol.not_axial()[0].upper() + vol.not_axial()[1:] + ("; pick it above." if axial_given else "."))
    st.stop()

if not waiting.ready(ctx.runs, ctx.name, waiting.COMPLETE):  # the classifiers still train: the segmenter alone
    lesions_ui.scan_lesions(ctx, scan, series, vol)
    st.stop()
order = data.branches(ctx.df)
decision_branch = ctx.rv.decision_branch()
threshold = ctx.rv.thresholds[decision_branch]
try:
    ctx.trained()
except Exception as exc:  # noqa: BLE001 (a partial run: said, not a traceback)
    st.error(f"Run `{ctx.name}` cannot score new slices: {exc}")
    st.stop()
flag_alpha, no_flag = scans.flag_level(ctx.runs, ctx.name, ctx.stamp)
table = scans.scan_table(ctx.runs, ctx.name, ctx.stamp, scan.digest, series, vol, flag_alpha)
summary = summarise(table, decision_branch, threshold)
dec = summary.decision


def every_slice() -> None:
    with st.expander(f"Every slice ({len(table)} rows)"):
        st.dataframe(table, hide_index=True, width="stretch")
        st.download_button("Download the table (CSV)", table.to_csv(index=False).encode(), "scan-slices.csv",
                           "text/csv", key="scan_csv", on_click="ignore")


why = scans.unscored(table)
if why is not None:  # no decision, profile or slice to show; not "no lung field": nothing was looked at
    st.error(f"No slice of the series could be scored: {why}")
    every_slice()
    st.stop()

# ---- the scan as a whole ---------------------------------------------------------------------------------
c1, *burden_cols = st.columns(4)
c1.metric("Scan decision", dec.label, help=dec.words, delta_color="off", delta_arrow="off",
          delta=None if dec.covid is None else f"statistic {dec.statistic:.3f}, operating point {dec.threshold:.3f}")
st.markdown(f"**Rule** · {dec.words}." + (f" **Diagnosis on file** (COVID-CT-MD): {scan.truth}." if scan.truth else ""))
scans.burden(burden_cols, summary, table)
external = data.external_report(ctx.runs, ctx.name, ctx.stamp)  # the run's record on another hospital
call = scan_call.assess(table, dec, external, no_flag, data.windows_report(ctx.runs, ctx.name, ctx.stamp))
trust_ui.scan_call(call)



def open_slice(i: int) -> None:
    """Slice i of the scan in the Case view."""
    r = table.iloc[i]
    ui.open_scan_case(scans.ScanCase(scan.name, scan.digest, series, i, float(r.position_mm), str(r.file), vol.image(i),
                                     scan.truth))


# ---- along the scan, and the slice scroller ------------------------------------------------------------------
slice_key = f"scan_slice_{scan.digest[:12]}_{series}"
if slice_key not in st.session_state:
    st.session_state[slice_key] = dec.top[0] if dec.top else len(vol) // 2
st.plotly_chart(scan_charts.z_profile(table, order, dec, st.session_state[slice_key]), width="stretch",
                config=ui.PLOTLY_CONFIG, key="scan_profile")

st.subheader("Slice by slice")
index = scans.slice_scroller(len(vol), slice_key)
row = table.iloc[index]
p = row.get(f"p_{decision_branch}", math.nan)
st.markdown(scans.slice_line(row, index, f"{decision_branch} p(COVID) = " + (
    "n/a" if math.isnan(p) else f"{p:.3f} → **{'COVID' if p >= threshold else 'non-COVID'}**")))
if row.problem:
    st.error(f"This slice could not be scored: {row.problem}")
else:
    try:
        pics = scans.slice_pictures(ctx.runs, ctx.name, ctx.stamp, scan.digest, series, index, vol)
    except Exception as exc:  # noqa: BLE001 (the scores stand without the maps)
        st.error(f"The maps of this slice cannot be drawn: {exc}")
    else:
        ui.image_row([(pics["slice"], "the slice (lung window), its lung field outlined in cyan"),
                      (pics["lesion"], "lesions (the run's segmenter, p > 0.5)"),
                      (pics["cam"], f"decision map: fusion CAM at the run's tau {ctx.tau:.2f}")])
    if st.button(f"Open slice {index} in the Case view", key="scan_open_shown", icon=":material/image_search:"):
        open_slice(index)

# ---- the slices that drive the decision --------------------------------------------------------------------
st.subheader("The slices that drive the decision")
st.caption((f"The top {len(dec.top)} slices" if len(dec.top) > 1 else "The top slice")
           + f" by the {decision_branch} branch's p(COVID), whose mean is the scan's statistic ({RULE.name}). "
           "Each opens in the Case view.")
COLS = 6
for start in range(0, len(dec.top), COLS):
    cols = st.columns(COLS)
    for col, i in zip(cols, dec.top[start:start + COLS]):
        r = table.iloc[i]
        with col.container(border=True):
            st.image(scans.thumbnail(scan.digest, series, i, vol), width="stretch")
            st.caption(f"slice {i}" + ("" if math.isnan(r.position_mm) else f" · {r.position_mm:g} mm")
                       + f" · p = {r[f'p_{decision_branch}']:.3f}")
            if st.button("Open", key=f"scan_top_{i}", width="stretch"):
                open_slice(i)

# ---- every slice, and the report ------------------------------------------------------------------------------
every_slice()
scan_report_ui.report_buttons(ctx, scan, vol, table, summary, notes, order, call.brief())
