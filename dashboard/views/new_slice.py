"""New slice: upload a PNG/JPEG/DICOM/NIfTI slice, run every branch on it, place it in the 3D map. While the run's
classifiers train, from the end of its segmenter's first round, its lung field, lesions and signs alone
(dashboard.lesions_ui)."""
import streamlit as st

from core.audits import windows as windows_audit
from core.data.imaging import ImageReadError
from dashboard import data, lesions_ui, trust_ui, ui, uploads, waiting
from dashboard.components.scatter3d import scatter3d
from dashboard.map_args import map_points

ctx = ui.current()

st.title("New slice")
st.caption("The file is read in memory (its name is only shown, never used as a path) and analysed by the "
           "selected run: every branch's probability, the attention map and tau crop, the infected regions, "
           "the fusion CAM, and its place in the run's 3D feature map.")
# Any file name: hospitals export DICOM without an extension (IM0001), and a file is read by its content.
up = st.file_uploader(f"CT slice: PNG, JPEG, TIFF, DICOM (any name) or NIfTI (.nii, .nii.gz), up to "
                      f"{ui.upload_limit_mb()} MB; a 16-bit PNG or TIFF of CT numbers is read in the lung window",
                      key="upload")
if up is None:
    st.info("Upload a slice to analyse it.")
    st.stop()

raw = up.getvalue()
slice_index = None
try:
    if uploads.is_nifti(raw, up.name):
        n = uploads.upload_slice_count(raw, up.name)
        slice_index = st.slider("Axial slice of the volume", 0, n - 1, n // 2, key="nifti_slice") if n > 1 else 0
        st.caption(f"{n} axial slices in the volume")
    elif uploads.is_dicom(raw, up.name) and (n := uploads.upload_frame_count(raw, up.name)) > 1:
        slice_index = st.slider("Frame of the multi-frame file (as stored)", 0, n - 1, n // 2, key="dicom_frame")
        st.caption(f"{n} frames in the file (an Enhanced CT series): the Scan page reads them as one scan, in body "
                   "order.")
    not_axial = uploads.not_axial(raw, up.name, slice_index)
except ImageReadError as exc:
    st.error(str(exc))
    st.stop()
except Exception as exc:
    st.error(f"{uploads.display_name(up.name)}: this file could not be read as a CT volume ({type(exc).__name__}).")
    st.stop()
if not_axial:
    st.error(not_axial + ".")
    st.stop()

if not waiting.ready(ctx.runs, ctx.name, waiting.COMPLETE):  # the classifiers still train: the segmenter alone
    lesions_ui.slice_lesions(ctx, raw, up.name, slice_index)
    st.stop()
df = ctx.df
order = data.branches(df)
try:
    tr = ctx.trained()
except Exception as exc:
    st.error(f"Run `{ctx.name}` cannot analyse new slices: {exc}")
    st.stop()

result, images = uploads.cached_upload(st.session_state, tr, ctx.name, ctx.stamp, raw, up.name, slice_index)
if result.error:
    st.error(result.error)
    st.stop()

a = result.analysis
st.markdown(f"### `{result.name}`" + (f" · slice {slice_index}" if slice_index is not None else ""))
p = a.probs.get(ctx.rv.decision_branch())  # for the new slice's label in the 3D map
ui.live_analysis(ctx, tr, a, images, result.fusion_vector, order, "upload",
                 "uploaded slice, as the run sees it"
                 + (" (its lung field, harmonised)" if ctx.rv.input_mode == "lungs" else " (working size)"),
                 f"{trust_ui.fusion_cam_label(ctx)} (tau {ctx.tau:.2f})", result.slice01)

# Offered where the file holds CT numbers (DICOM CT, NIfTI, a 16-bit PNG or TIFF of them): an 8-bit image is a
# picture already windowed, so no other window can be made of it.
if result.hu is not None and st.toggle("Show it in other lung windows", key="upload_windows",
                                       help="A hospital exports slices through its viewer's lung preset: the slice, "
                                            "from its Hounsfield units, in each of the lung windows of `train "
                                            "windows` (a few seconds)"):
    decision = ctx.rv.decision_branch()
    calls, why = uploads.cached_window_calls(st.session_state, tr, ctx.name, ctx.stamp, result, slice_index,
                                             decision, float(ctx.rv.thresholds[decision]))
    if why:
        st.error(why)
    else:
        st.markdown(windows_audit.calls_text(calls, decision))
        st.dataframe(windows_audit.calls_table(calls), hide_index=True, width="stretch")

st.subheader("Place in the run's 3D map")
method = st.radio("Embedding", ["tsne", "umap"], horizontal=True, key="upload_method",
                  format_func=lambda m: {"tsne": "t-SNE", "umap": "UMAP"}[m])
try:
    xyz = data.embedding(ctx.runs, ctx.name, ctx.stamp, method, "fusion")
    keys = ctx.rv.feature_keys
    thumbs = data.hover_images(ctx.runs, ctx.name, ctx.stamp)
    pos = ctx.rv.place(result.fusion_vector, method)
except Exception as exc:
    st.error(f"The 3D map of this run cannot be drawn: {exc}")
    st.stop()
args = map_points(df, keys, xyz, "label", thumbs)
highlight = {"x": float(pos[0]), "y": float(pos[1]), "z": float(pos[2]), "label": "new slice",
             "text": f"{result.name} · p={p:.3f}" if p is not None else result.name, "imgs": images["thumbs"]}
clicked = scatter3d(args["points"], groups=args["groups"], highlight=highlight, height=560,
                    uirevision=f"{ctx.name}/{method}/fusion/upload", key="upload_map")
st.caption("The new slice (magenta diamond) sits at the inverse-distance-weighted mean of its 8 nearest "
           "neighbours' positions in fusion-feature space. Click a point to open that slice in the Case view.")
if isinstance(clicked, dict) and clicked.get("key") in set(keys) and clicked.get("nonce") != st.session_state.get("_upload_nonce"):
    st.session_state["_upload_nonce"] = clicked.get("nonce")
    ui.open_case(clicked["key"])

st.markdown("**Nearest slices of the run**")
rows = df.set_index("key")
cols = st.columns(6)
for col, (nk, dist) in zip(cols, ctx.rv.nearest_keys(result.fusion_vector, 6)):
    nr = rows.loc[nk]
    with col:
        st.image(data.thumbnail(ctx.runs, ctx.name, ctx.stamp, nk), width="stretch")
        st.caption(f"{nk.split('/')[-1]} · {'COVID' if nr.label == 1 else 'non-COVID'} · p={nr.p:.2f} · d={dist:.1f}")
        if st.button("Open", key=f"up_nb_{nk}", width="stretch"):
            ui.open_case(nk)
