"""COVID-19 chest-CT explainability lab: the dashboard.

    streamlit run dashboard/app.py -- --runs runs        # --runs defaults to ./runs ($COVID_LAB_RUNS also works)

Pages (dashboard/views/): Overview, Training, Data, Map, Does it look at the disease?, Case, Margin review, New slice,
Scan. A run is listed as soon as its training starts; a page that needs a stage not trained yet says which, how far
it is and when it is expected (dashboard.waiting), links the pages open already, and opens itself when the stage
lands. Server settings (bind 127.0.0.1, XSRF protection on, the upload limit (a whole scan), no usage stats) live in
.streamlit/config.toml.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run` puts dashboard/ on the path, not the project
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import data, trust_ui, ui, waiting  # noqa: E402

st.set_page_config(page_title="COVID-CT attention lab", page_icon="🫁", layout="wide")

# Each page with what it reads of a run (dashboard.waiting): nothing trained, the first branch's
# predictions, or the finished run (every stage, the cached features and maps).
PAGES = [
    (st.Page("views/overview.py", title="Overview", icon=":material/insights:", default=True), waiting.PREDICTIONS),
    (st.Page("views/training.py", title="Training", icon=":material/monitoring:"), waiting.NOTHING),
    (st.Page("views/data.py", title="Data", icon=":material/photo_library:"), waiting.NOTHING),
    (st.Page("views/map.py", title="Map", icon=":material/scatter_plot:"), waiting.COMPLETE),
    (st.Page("views/disease.py", title="Does it look at the disease?", icon=":material/visibility:"),
     waiting.PREDICTIONS),
    (st.Page("views/case.py", title="Case", icon=":material/image_search:"), waiting.COMPLETE),
    (st.Page("views/margin.py", title="Margin review", icon=":material/rule:"), waiting.PREDICTIONS),
    (st.Page("views/new_slice.py", title="New slice", icon=":material/upload_file:"), waiting.LESIONS),
    (st.Page("views/scan.py", title="Scan", icon=":material/view_in_ar:"), waiting.LESIONS),
]
page = st.navigation([p for p, _ in PAGES])
need = {p.url_path: n for p, n in PAGES}.get(page.url_path, waiting.COMPLETE)

runs = data.runs_dir()
st.session_state["_runs_dir"] = str(runs)
names = data.available_runs(runs, in_training=True)

with st.sidebar:
    st.caption(ui.RESEARCH_NOTICE)
    if names:
        if st.session_state.get("run_name") not in names:
            st.session_state["run_name"] = names[0]  # the newest
        st.selectbox("Run", names, key="run_name", help=f"Run folders under {ui.runs_dir_label(runs)}, newest first")
        others = [n for n in names if n != st.session_state["run_name"]]
        if st.session_state.get("compare_name") not in others:
            st.session_state["compare_name"] = ui.NO_SECOND_RUN
        st.selectbox("Compare with", [ui.NO_SECOND_RUN, *others], key="compare_name",
                     help="A second run shown beside the first: metric tables, the same slice in both, "
                          "decisions that changed, the shortcut audit")

ui.research_notice()
if not names:
    st.title("No runs yet")
    st.error(f"No trained runs, nor runs in training, under `{ui.runs_dir_label(runs)}` (a run folder holds "
             "config.json and predictions.csv, or a progress log once its training starts). Start one with "
             "`make demo` or `python -m train pipeline --out runs/demo`, or point the dashboard at another "
             "folder: `streamlit run dashboard/app.py -- --runs DIR`.")
    st.stop()

try:
    ctx = ui.current()
    scored = waiting.has_predictions(ctx.rv.run.path)
    _ = ctx.rv.pipeline  # its settings (an older format names `train migrate`)
    if scored:
        _ = ctx.df  # its predictions
except Exception as exc:  # a broken or half-written run folder: say so, do not show a traceback
    st.error(f"Run `{st.session_state['run_name']}` cannot be read: {exc}")
    st.stop()

if ctx.rv.synthetic:
    ui.synthetic_banner(ctx.rv)
if scored and st.session_state.get("_selected_run") != ctx.name:  # a new run: its own slices
    st.session_state["_selected_run"] = ctx.name
    if st.session_state.get("selected_key") not in set(ctx.df.key):
        st.session_state.pop("selected_key", None)

with st.sidebar:
    pipe = ctx.rv.pipeline
    st.caption(f"{pipe.backbone} · {pipe.strategy} · CAM: {trust_ui.method_label(ctx, pipe.cam)} · tau {pipe.tau} · "
               + (f"{len(ctx.df)} slices" if scored else "training"))
    trust_ui.level_picker()
    if st.session_state.get("selected_key"):
        st.caption(f"selected: `{st.session_state['selected_key']}`")

if not waiting.ready(ctx.runs, ctx.name, need):
    waiting.panel(ctx.runs, ctx.name, need, page.title, PAGES)
    st.stop()
if need == waiting.PREDICTIONS:
    waiting.training_note(ctx.runs, ctx.name)
page.run()
