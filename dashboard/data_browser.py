"""The Data page's cache: every slice of the run's data root (core.data.catalogue), the near-duplicate flags
of `train audit`, and each slice's pictures and signs (core.knowledge.slice_facts), computed when the slice is
first on screen and kept (the lung fields also on disk, beside the decode cache), so the page is usable
long before any training ends.

The run's segmenter joins in once its stage has finished (infnet/best.pt exists): `segmenter_stamp` is part
of every key, so the pictures gain their lesion maps on the next rerun after it lands.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from core.config import PipelineConfig
from core.data.imaging import read_mask
from core.inputs.fields import FieldFinder, needs_segmenter
from core.inputs.frames import CLASSICAL
from core.knowledge import slice_facts
from core.knowledge.signs import LESION_P, NAMES
from core.runs.runfolder import RunFolder, safe_child
from core.runs.verdicts import audit_pairs, near_duplicate_notes
from dashboard import data
from dashboard import images as im

EXPERT_COLOUR = (255, 215, 0)  # the expert's infection mask, outlined


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


def _seg_config(runs: str, name: str):
    pipe = RunFolder(safe_child(runs, name)).config.get("pipeline")
    return None if pipe is None else PipelineConfig.from_saved(pipe)


@st.cache_resource(max_entries=2, show_spinner="Loading the run's segmenter...")
def _segmenter(runs: str, name: str, stamp: str):
    from core.training.segmentation import load_segmenter

    return load_segmenter(safe_child(runs, name) / "infnet" / "best.pt")


@st.cache_resource(max_entries=4, show_spinner=False)
def _fields(runs: str, name: str, stamp: str | None) -> FieldFinder:
    """The run's lung fields; before its segmenter exists, the classical ones (what input lungs+lesions adds to)."""
    cfg = _seg_config(runs, name)
    if cfg is None or (needs_segmenter(cfg.input) and stamp is None):
        return CLASSICAL
    return FieldFinder.of_run(RunFolder(safe_child(runs, name)), cfg)


@st.cache_data(max_entries=2048, show_spinner=False)
def slice_view(runs: str, name: str, path: str, mask: str, stamp: str | None) -> dict:
    """PNG bytes of one slice: card (lung field outlined, lesions over it once there is a segmenter), slice,
    field, lesion (or None), expert (the expert's mask outlined, or None); signs (or None); found (a lung
    field), lesion_found (a pixel the segmenter calls lesion)."""
    fields = _fields(runs, name, stamp)
    fr = slice_facts.frame(path, fields=fields)
    out = {"slice": im.to_png(im.grey_rgb(fr.image)), "field": im.to_png(im.outline(fr.image, fr.lung)),
           "lesion": None, "lesion_found": False, "expert": None, "signs": None, "found": fr.found,
           "lungs_with_lesions": fields is not CLASSICAL and fields.segmenter is not None}
    card = fr.image
    if stamp is not None:
        cfg = _seg_config(runs, name)
        with data.MODEL_LOCK:
            lesion = slice_facts.lesion_map(_segmenter(runs, name, stamp), cfg.seg, path)
        card = im.lesion_overlay(fr.image, lesion)
        out["lesion"], out["lesion_found"] = im.to_png(card), bool((lesion > LESION_P).any())
        out["signs"] = slice_facts.signs(fr, lesion).to_dict()
    out["card"] = im.to_png(im.outline(card, fr.lung))
    if mask:
        gt = np.asarray(Image.fromarray((read_mask(mask) > 0).astype(np.uint8) * 255).resize(fr.image.shape[::-1]))
        out["expert"] = im.to_png(im.outline(fr.image, gt > 127, EXPERT_COLOUR))
    return out


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
