"""A 3D scatter (plotly.js scatter3d) with image hover cards and click-to-select, as a Streamlit component.

st.plotly_chart cannot show images on hover and returns no selection for 3D scatters, so this
small component draws the plot itself. Its frontend is one HTML file speaking Streamlit's
component protocol over postMessage (no npm build, no CDN). plotly.js is served offline from the
installed `plotly` package: the folder Streamlit serves is assembled at import time under the
git-ignored .cache/components/scatter3d/ (index.html + plotly.min.js copied there).

    value = scatter3d(points, groups=..., key="map")   # None, or {"key": ..., "index": ..., "nonce": ...}
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import streamlit.components.v1 as components

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parents[2]
SOURCE = HERE / "frontend" / "index.html"
BUILD_DIR = Path(os.environ.get("COVID_LAB_COMPONENT_DIR", PROJECT_ROOT / ".cache" / "components" / "scatter3d"))


def plotly_js() -> Path:
    import plotly

    f = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
    if not f.exists():
        raise FileNotFoundError(f"{f}: plotly.js is missing from the installed plotly package")
    return f


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _copy_if_changed(src: Path, dst: Path) -> None:
    if dst.exists() and dst.stat().st_size == src.stat().st_size and _digest(dst) == _digest(src):
        return
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.")
    os.close(fd)
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)  # atomic: a concurrent app never serves half a file


def build(folder: Path = BUILD_DIR) -> Path:
    """Assemble the served folder: index.html + plotly.min.js. Idempotent and safe to run concurrently."""
    folder.mkdir(parents=True, exist_ok=True)
    _copy_if_changed(SOURCE, folder / "index.html")
    _copy_if_changed(plotly_js(), folder / "plotly.min.js")
    return folder


BUILD_DIR = build()


def _component():
    # Declared on each call: registration needs a script-run context, and the module may first be
    # imported outside one (tests). Re-registering the same name and path is a no-op.
    return components.declare_component("scatter3d", path=str(BUILD_DIR))


def scatter3d(points: list[dict], groups: list[dict] | None = None, continuous: dict | None = None,
              selected: str | None = None, highlight: dict | None = None, height: int = 640,
              uirevision: str = "", title: str = "", key: str | None = None):
    """Draw the map. points: [{"key", "x", "y", "z", "text", "outcome", "imgs": [data URIs]}];
    groups: [{"name", "color", "indices"}] (categorical colours) or continuous: {"values", "title"};
    selected: a key drawn with a ring; highlight: {"x", "y", "z", "label", "imgs"} (a new slice).
    Returns the last click, {"key", "index", "nonce"}, or None."""
    return _component()(points=points, groups=groups or [], continuous=continuous, selected=selected,
                        highlight=highlight, height=height, uirevision=uirevision, title=title,
                        key=key, default=None)
