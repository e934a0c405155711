"""The Data page's cache: every slice of the run's data root (core.data.catalogue), the near-duplicate flags
of `train audit`, and each slice's pictures and signs (core.pictures.data_views.draw), computed when the slice is
first on screen and kept (the lung fields also on disk, beside the decode cache), so the page is usable
long before any training ends; once the run's precompute stage has run, its first pages are read from the run's
feature cache.

The run's segmenter joins in once its stage has finished (infnet/best.pt exists): `segmenter_stamp` is part
of every key, so the pictures gain their lesion maps on the next rerun after it lands.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core.inputs.fields import FieldFinder
from core.knowledge.signs import NAMES
from core.pictures import data_views
from core.runs.runfolder import RunFolder, safe_child
from core.runs.verdicts import audit_pairs, near_duplicate_notes
from dashboard import data


@st.cache_data(max_entries=4, show_spinner="Listing every slice of the data...")
def catalogue(data_root: str) -> tuple[pd.DataFrame, dict[str, str]]:
    from core.data.catalogue import catalogue as read

    return read(data_root)


def near_duplicates(runs: str) -> dict[str, str] | None:
    """slice key -> its near-duplicate note from `<runs>/audit.json`; None when no audit was written."""
    f = Path(runs) / "audit.json"
    try:
        mtime = f.stat().st_mtime_ns
    except OSError:
        return None
    return _near_duplicates(runs, mtime)


@st.cache_data(max_entries=4, show_spinner=False)
def _near_duplicates(runs: str, mtime: int) -> dict[str, str]:
    return near_duplicate_notes(audit_pairs(runs) or [])


def segmenter_stamp(runs: str, name: str) -> str | None:
    """Changes when the run's segmenter is (re)trained; None until its stage has finished."""
    ckpt = safe_child(runs, name) / "infnet" / "best.pt"
    try:
        return str(ckpt.stat().st_mtime_ns)
    except OSError:
        return None


@st.cache_resource(max_entries=2, show_spinner="Loading the run's segmenter...")
def _segmenter(runs: str, name: str, stamp: str):
    from core.training.segmentation import load_segmenter

    return load_segmenter(safe_child(runs, name) / "infnet" / "best.pt")


@st.cache_resource(max_entries=4, show_spinner=False)
def _fields(runs: str, name: str, stamp: str | None) -> FieldFinder:
    return data_views.fields(RunFolder(safe_child(runs, name)), stamp is not None)


@st.cache_resource(max_entries=2, show_spinner=False)
def _stored(runs: str, name: str, stamp: str, data_root: str, config_time: int) -> dict[str, dict]:
    """The pictures the pipeline's precompute stage drew (core.pictures.data_views.stored): shared, read-only.
    Keyed by config.json's time too: the stage records itself there when it ends, so they show at the next rerun."""
    return data_views.stored(RunFolder(safe_child(runs, name)), data_root)


@st.cache_data(max_entries=2048, show_spinner=False)
def slice_view(runs: str, name: str, path: str, mask: str, stamp: str | None) -> dict:
    """core.pictures.data_views.draw of one slice of the run's data root: the stored pictures when the precompute
    stage drew them, else drawn now (with the run's segmenter once its stage has finished)."""
    run = RunFolder(safe_child(runs, name))
    if stamp is not None:
        config_time = (run.path / "config.json").stat().st_mtime_ns
        hit = _stored(runs, name, stamp, run.config.get("data_root", ""), config_time).get(path)
        if hit is not None:
            return hit
    fields = _fields(runs, name, stamp)
    if stamp is None:
        return data_views.draw(path, mask, fields)
    with data.MODEL_LOCK:
        return data_views.draw(path, mask, fields, _segmenter(runs, name, stamp),
                               data_views.pipeline_config(run).seg)


def sign_value(k: str, v) -> str:
    """One sign's value as the pages and the case report print it."""
    if v is None or v == "" or (isinstance(v, float) and np.isnan(v)):
        return "— (a lone slice)" if k == "lower_zone" else "—"
    if k == "bilateral":
        return "yes" if float(v) else "no"
    if k == "lesion_count":
        return str(int(float(v)))
    if k == "lower_zone":
        return "yes" if float(v) else "no"
    return f"{100 * float(v):.1f}%"


def signs_table(signs: dict) -> pd.DataFrame:
    """The signs with their clinical names and readable values."""
    return pd.DataFrame([{"sign": NAMES[k], "value": sign_value(k, signs.get(k))} for k in NAMES])


def signs_line(signs: dict) -> str:
    """The signs in one line ('lesion share (both lungs) 12.0% · ...'), the ones not measured left out."""
    table = signs_table(signs)
    return " · ".join(f"{r.sign} {r.value}" for r in table.itertuples() if not r.value.startswith("—"))


def row_signs(row) -> dict | None:
    """The signs of a predictions.csv row (a pandas Series; '' where not measured), or None when the run's
    predictions hold no signs (a run trained before its signs stage)."""
    if not all(k in getattr(row, "index", ()) for k in NAMES):
        return None
    return {k: (None if row[k] == "" else float(row[k])) for k in NAMES}
