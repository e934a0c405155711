"""The radiological signs (core.knowledge.signs) against the doctors' masks (`python -m train signs`).

For each labelled COVID-SemiSeg slice of a split, every sign is computed twice in the run's frame: from the
run's segmenter, exactly as a live analysis does (TrainedRun.analyse's `signs`), and from the doctors'
binary mask cut from the slice as the run framed it and put on the stored lesion map's grid
(`mask_on_grid`), with the same lung field and grey scale (`signs_in_frame`). The consolidation share is
checked against the doctors' multi-class mask (GT-2 consolidation among their lesion pixels) twice: the
segmenter's lesions with the grey rule (the product's value), and the doctors' own lesions with the grey
rule (the rule's own error, without the segmenter's).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from core.data.errors import DataError
from core.data.imaging import check_mask_shape, read_mask, read_slice
from core.data.semiseg import SegSlice, read_labelled
from core.inputs.boxes import Box
from core.inputs.harmonise import to_frame
from core.inputs.lesion_maps import lesion_map_u8
from core.knowledge.signs import CONSOLIDATION, LESION_P, NAMES, SIGNS, Signs, on_grid, signs_in_frame
from core.models import network
from core.runs.runfolder import RunError, RunFolder

SIGNS_CHECK_FILE = "signs_check.json"  # what `train signs` writes into the run folder
SPLIT = "test"  # the labelled slices the check reports on by default
CHOSEN_ON = "train"  # the split CONSOLIDATION was chosen on (core.knowledge.signs)
RULE = "consolidation_share_rule"  # the grey rule on the doctors' lesions against their multi-class mask
CHECKED = (*(s for s in SIGNS if s != "lower_zone"), RULE)
CHECK_NAMES = {**NAMES, RULE: "consolidation share, grey rule on the doctors' lesions"}
BINARY = ("bilateral",)  # yes/no signs: their agreement share is reported too
# Shares *of the lesion*: undefined on a slice where either side finds no lesion in the lung field.
OF_LESION = ("peripheral_share", "consolidation_share", RULE)
LONE_SLICE = {"lower_zone": "a lone slice's position in its scan is unknown (core.knowledge.scan measures it)"}


def mask_on_grid(mask: np.ndarray, frame: Box, size: int) -> np.ndarray:
    """An (H, W) boolean mask on its slice -> the (112, 112) uint8 map a run stores for its segmenter's
    lesions: cut as the run framed the slice, nearest at `size` (the segmenter's side), then resized as
    lesion_map_u8 resizes the segmenter's probabilities."""
    framed = to_frame(np.asarray(mask, dtype=np.float32), frame, size, order=0)
    return lesion_map_u8(torch.from_numpy(np.ascontiguousarray(framed))[None])[0].numpy()


def doctors_signs(slice01: np.ndarray, frame: Box, lung: np.ndarray, lung_found: bool, mask: np.ndarray,
                  size: int) -> Signs:
    """The signs of a slice with the doctors' binary mask (H, W; > 0 lesion) as its lesion map, in the frame
    `frame` with the lung field `lung` a run found there (SliceAnalysis.frame / .lung)."""
    return signs_in_frame(slice01, frame, lung, mask_on_grid(np.asarray(mask) > 0, frame, size), lung_found)


def doctors_consolidation(multiclass: np.ndarray, frame: Box, lung: np.ndarray, size: int) -> float:
    """Share of the doctors' lesion inside the lung field they label consolidation (multi-class mask: 1 ground
    glass, 2 consolidation), on the same grid as the signs; NaN where they mark no lesion in the field."""
    lesion = mask_on_grid(multiclass > 0, frame, size) / 255 > LESION_P
    dense = mask_on_grid(multiclass == 2, frame, size) / 255 > LESION_P
    inside = lesion & (on_grid(lung, lesion.shape[-1]) > 0.5)
    return float((dense & inside).sum() / inside.sum()) if inside.any() else math.nan


def _mask(path: Path, shape) -> np.ndarray:
    return check_mask_shape(read_mask(path), shape, str(path))


def slice_pairs(tr, s: SegSlice) -> dict:
    """One slice: {sign: [segmenter, doctors]} (RULE: [grey rule on the doctors' lesions, multi-class])."""
    img = read_slice(s.image)
    a = tr.analyse(img)
    size = tr.cfg.seg.size
    seg = a.signs.to_dict()
    doc = doctors_signs(img, a.frame, a.lung, a.lung_found, _mask(s.mask, img.shape), size).to_dict()
    multi = math.nan
    if s.multiclass is not None:
        multi = doctors_consolidation(_mask(s.multiclass, img.shape), a.frame, a.lung, size)
    pairs = {k: [seg[k], doc[k]] for k in SIGNS if k != "lower_zone"}
    pairs["consolidation_share"] = [seg["consolidation_share"], multi]
    pairs[RULE] = [doc["consolidation_share"], multi]
    none_seg, none_doc = seg["lesion_share"] == 0, doc["lesion_share"] == 0
    for k in OF_LESION:
        if none_doc or (none_seg and k != RULE):
            pairs[k] = [math.nan, math.nan]
    return {"key": s.key, "lung_found": a.lung_found, "pairs": pairs}


def agreement(pairs: list[list[float]], binary: bool = False) -> dict:
    """Pearson r, mean absolute error and means over the slices where both values exist (n says how many);
    r is NaN where fewer than 2 pairs or either side is constant. `binary`: the share of equal calls too."""
    a = np.asarray(pairs, dtype=float).reshape(-1, 2)
    a = a[np.isfinite(a).all(1)]
    seg, doc = a[:, 0], a[:, 1]
    n = len(a)
    r = float(np.corrcoef(seg, doc)[0, 1]) if n >= 2 and seg.std() > 0 and doc.std() > 0 else math.nan
    out = {"n": n, "r": r, "mae": float(np.abs(seg - doc).mean()) if n else math.nan,
           "mean_segmenter": float(seg.mean()) if n else math.nan, "mean_doctors": float(doc.mean()) if n else math.nan}
    if binary:
        out["agreement"] = float((seg == doc).mean()) if n else math.nan
    return out


def check(tr, slices: list[SegSlice], split: str, progress: Callable[[int, int], None] | None = None) -> dict:
    """The check over `slices` (labelled COVID-SemiSeg slices of `split`) through the trained run `tr`."""
    rows = []
    for i, s in enumerate(slices):
        rows.append(slice_pairs(tr, s))
        if progress is not None:
            progress(i + 1, len(slices))
    signs = {k: agreement([r["pairs"][k] for r in rows], k in BINARY) for k in CHECKED}
    not_measurable = dict(LONE_SLICE)
    n_multi = sum(s.multiclass is not None for s in slices)
    if not n_multi:
        reason = f"no multi-class masks (MultiClassInfection-*/GT) for the {split} slices"
        not_measurable.update({k: reason for k in ("consolidation_share", RULE)})
    note = (f"the consolidation threshold (relative grey {CONSOLIDATION}) was chosen on the {CHOSEN_ON} slices: "
            + ("these are they, so its rows are not a held-out check" if split == CHOSEN_ON
               else f"the {split} slices chose nothing"))
    return {"split": split, "n_slices": len(slices), "n_multiclass": n_multi, "grid": "the stored lesion map's (112 px)",
            "note": note, "signs": {k: v for k, v in signs.items() if k not in not_measurable},
            "not_measurable": not_measurable, "names": {k: CHECK_NAMES[k] for k in (*CHECKED, *LONE_SLICE)},
            "rows": rows}


def require_segmenter(folder: RunFolder) -> None:
    """Refuse a run without a segmenter: the signs are read from its lesion maps."""
    if not folder.has_stage(network.SEGMENTER):
        raise RunError(f"{folder.path}: no segmenter ({network.SEGMENTER}/best.pt): the signs are read from the "
                       "run's lesion maps; train it first (`python -m train pipeline`)")


def labelled_slices(data_root, split: str) -> list[SegSlice]:
    slices = read_labelled(data_root, split)
    if not slices:
        raise DataError(f"{data_root}: no labelled COVID-SemiSeg {split} slices")
    return slices
