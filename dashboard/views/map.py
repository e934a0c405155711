"""Map: the 3D t-SNE / UMAP of the fusion-layer (or a branch's) features; hover for images, click to open."""
import streamlit as st

from core.models.network import TITLES
from core.runs.run_view import RunView
from dashboard import data, trust_ui, ui
from dashboard.components.scatter3d import scatter3d
from dashboard.map_args import CHANGED, COLOUR_BY, OOD, PREDICTION_SET, map_points

ctx = ui.current()
other = ui.comparison()
df = ctx.df if other is None else data.with_changed(ctx, other)
df, missing = data.with_trust(ctx, df, trust_ui.level())
offered = [*COLOUR_BY, *([PREDICTION_SET] if "set" in df else []), *([OOD] if "ood" in df else []),
           *([CHANGED] if other else [])]

st.title("Feature map")
c1, c2, c3 = st.columns(3)
method = c1.radio("Embedding", ["tsne", "umap"], horizontal=True, key="map_method",
                  format_func=lambda m: {"tsne": "t-SNE", "umap": "UMAP"}[m])
which = c2.selectbox("Features", list(RunView.FEATURE_SETS), key="map_features",
                     format_func=lambda w: ("fusion layer (all branches)" if w == "fusion"
                                            else TITLES[w].removeprefix("the ")))
colour_by = c3.selectbox("Colour by", offered, key="map_colour",
                         help=f"`{PREDICTION_SET}`: the decision branch's set at the level picked in the sidebar; "
                              f"`{OOD}`: the out-of-distribution flag. A second run picked in the sidebar adds: its "
                              "decision differs from this run's")
for problem in missing:
    st.caption(f"Colour options left out: {problem}")

try:
    xyz = data.embedding(ctx.runs, ctx.name, ctx.stamp, method, which)
    keys = ctx.rv.feature_keys
    thumbs = data.hover_images(ctx.runs, ctx.name, ctx.stamp)
except Exception as exc:
    st.error(f"The 3D map of this run cannot be drawn: {exc}")
    st.stop()

args = map_points(df, keys, xyz, colour_by, thumbs)
st.caption(f"{len(keys)} slices · {method.upper() if method == 'umap' else 't-SNE'} of the standardised "
           f"{which} features (computed once, cached in the run folder). Hover a point to see the slice, its "
           "fusion CAM and its infected-region overlay; click it to open the Case view.")
clicked = scatter3d(args["points"], groups=args["groups"], continuous=args["continuous"],
                    selected=st.session_state.get("selected_key"), height=640,
                    uirevision=f"{ctx.name}/{method}/{which}", key="map_plot")

# A click arrives once; a nonce tells a new click from the value the component still holds.
if isinstance(clicked, dict) and clicked.get("key") in set(keys) and clicked.get("nonce") != st.session_state.get("_map_nonce"):
    st.session_state["_map_nonce"] = clicked.get("nonce")
    ui.open_case(clicked["key"])
