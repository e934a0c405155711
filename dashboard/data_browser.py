"""The Data page's cache: every slice of the run's data root (core.data.catalogue), the near-duplicate flags
of `train audit`, and each slice's pictures and signs (core.pictures.data_views.draw), computed when the slice is
first on screen and kept (the lung fields also on disk, beside the decode cache), so the page is usable
long before any training ends; once the run's precompute stage has run, its first pages are read from the run's
feature cache.

The run's segmenter joins in once round 0 of its stage has ended (preliminary lesions, from the model after its
last finished round, said so on the page), and its final model once the stage has ended: the lesion source is
part of every key, so the pictures change on the next rerun after a round or the stage lands.
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


@st.cache_data(max_entries=8, persist="disk", show_spinner="Measuring the lungs of every slice of the source (once, "
                                                              "kept on disk: about 25 s for COVID-CT's 746)...")
def black_lungs(slices: tuple[tuple[str, str], ...]) -> list[str]:
    """The keys of the (key, path) `slices` whose lungs are black: shown in a soft-tissue window
    (core.knowledge.lung_window), as the Case view and the Data page say of one slice. A file that cannot be read is
    not counted: its own view names its problem."""
    from core.data.imaging import ImageReadError
    from core.knowledge.lung_window import of_file, readable

    black = []
    for key, path in slices:
        try:
            if not readable(of_file(path)):
                black.append(key)
        except ImageReadError:
            continue
    return black


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


def lesion_source(runs: str, name: str) -> data_views.LesionSource | None:
    """The segmenter whose lesions the page shows now (core.pictures.data_views.lesion_source): the stage's final
    model, or while it trains the model after its last finished round; None before round 0 has ended."""
    return data_views.lesion_source(RunFolder(safe_child(runs, name)))


def rounds_text(rounds_done: int) -> str:
    """The training a preliminary segmenter has had, in words."""
    return "round 0 (the labelled slices alone)" if rounds_done == 0 else f"pseudo-label round {rounds_done}"


@st.cache_resource(max_entries=2, show_spinner="Loading the run's segmenter...")
def _segmenter(model: str, stamp: str):
    """The segmenter at `model` (a checkpoint path), loaded once per `stamp` (its LesionSource's)."""
    from core.training.segmentation import load_segmenter

    return load_segmenter(model)


@st.cache_resource(max_entries=4, show_spinner=False)
def _fields(runs: str, name: str, final_stamp: str | None) -> FieldFinder:
    """The run's lung fields: an input that adds the lesions waits for the final segmenter (`final_stamp`)."""
    return data_views.fields(RunFolder(safe_child(runs, name)), final_stamp is not None)


@st.cache_resource(max_entries=2, show_spinner=False)
def _stored(runs: str, name: str, stamp: str, data_root: str, config_time: int) -> dict[str, dict]:
    """The pictures the pipeline's precompute stage drew (core.pictures.data_views.stored): shared, read-only.
    Keyed by config.json's time too: the stage records itself there when it ends, so they show at the next rerun."""
    return data_views.stored(RunFolder(safe_child(runs, name)), data_root)


@st.cache_data(max_entries=2048, show_spinner=False)
def slice_view(runs: str, name: str, path: str, mask: str, source: data_views.LesionSource | None) -> dict:
    """core.pictures.data_views.draw of one slice of the run's data root, with the lesions of `source`
    (lesion_source's; None: lung field only): the stored pictures when the precompute stage drew them with the
    final segmenter, else drawn now."""
    run = RunFolder(safe_child(runs, name))
    final = source is not None and source.final
    if final:
        config_time = (run.path / "config.json").stat().st_mtime_ns
        hit = _stored(runs, name, source.stamp, run.config.get("data_root", ""), config_time).get(path)
        if hit is not None:
            return hit
    fields = _fields(runs, name, source.stamp if final else None)
    if source is None:
        return data_views.draw(path, mask, fields)
    with data.MODEL_LOCK:
        return data_views.draw(path, mask, fields, _segmenter(str(source.path), source.stamp),
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
