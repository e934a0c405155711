"""Radiological signs of one slice, from its lung field and the segmenter's lesion map.

A radiologist first asks whether there is disease in the lungs, then whether it looks like COVID-19
(RSNA consensus "typical": peripheral, bilateral ground glass, with or without consolidation, lower
zones) rather than another pneumonia. These descriptors put numbers on both questions:

    lesion_share           lesion share of the whole lung field (the `lesion-share` baseline)
    right_share, left_share  lesion share of each lung (patient's right lung = image left, as the
                           lesion crops split them: core.inputs.lesion_crops)
    bilateral              both lungs hold at least BILATERAL_MIN of lesion
    peripheral_share       share of the lesion inside the outer third of the lung field, by distance
                           to the field's border (the outer third of each lung's largest depth)
    lesion_count           separate lesion pieces (8-connected, at least MIN_PIECE of the map)
    consolidation_share    share of the lesion at least halfway from aerated lung to soft tissue in
                           grey (`relative_grey`, CONSOLIDATION); ground glass is the rest
    lower_zone             slice-level: the scan's lower third (1) or not (0) when the slice's position
                           in a scan is known, NaN for a lone slice (core.knowledge.scan gives the
                           scan-level lower-zone share)

Every sign is computed on the grid of the stored lesion map (core.inputs.lesion_maps, 112 px), with
the lung field resized to it as `lesion_share` does, so the pipeline's cached maps and a live
analysis give the same numbers. A slice without a lung field (a scan's neck or abdomen, where the lungs are
absent or a sliver) has no lung for a lesion to lie in: every sign is 0 (the `lesion-share` baseline too) and
`lung_found` says so. Measured over the whole frame instead, the segmenter's marks on the neck, bowel and
shoulders read as lesion (SIGNS_VERSION 1).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

SIGNS_VERSION = "2"  # bump whenever what a sign measures changes: part of the keys of the rows scored with them
LESION_P = 0.5  # a map pixel is lesion where its probability passes this (as lesion_share counts)
BILATERAL_MIN = 0.01  # each lung's lesion share for "bilateral"
PERIPHERAL_DEPTH = 1 / 3  # the outer third of each lung's largest depth
MIN_PIECE = 2e-4  # share of the map: smaller lesion pieces are speckle (core.inputs.lesion_crops' min_area)
# A lesion pixel is consolidation where its relative grey (0: the lung field's median, 1: the body's
# soft tissue) passes this: chosen on COVID-SemiSeg's labelled *train* slices' multi-class masks (the
# threshold with the smallest error in the per-slice consolidation share), checked on its test slices
# (`python -m train signs`).
CONSOLIDATION = 0.5

SIGNS = ("lesion_share", "right_share", "left_share", "bilateral", "peripheral_share", "lesion_count",
         "consolidation_share", "lower_zone")
# Clinical names for tables, pages and reports.
NAMES = {"lesion_share": "lesion share (both lungs)", "right_share": "lesion share, right lung",
         "left_share": "lesion share, left lung", "bilateral": "bilateral", "peripheral_share": "peripheral share",
         "lesion_count": "lesion pieces", "consolidation_share": "consolidation share",
         "lower_zone": "lower zone"}


@dataclass(frozen=True)
class Signs:
    lesion_share: float
    right_share: float
    left_share: float
    bilateral: float  # 1.0 / 0.0: a float so a table column keeps one type
    peripheral_share: float
    lesion_count: int
    consolidation_share: float
    lower_zone: float = math.nan
    lung_found: bool = True

    @property
    def ground_glass_share(self) -> float:
        return 1.0 - self.consolidation_share

    def to_dict(self) -> dict:
        return asdict(self)


def on_grid(arr: torch.Tensor | np.ndarray, size: int, mode: str = "nearest") -> np.ndarray:
    t = torch.as_tensor(np.asarray(arr, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(size, size), mode=mode, **({} if mode == "nearest" else {"align_corners": False}))[0, 0].numpy()


def _depth_outer(side: np.ndarray) -> np.ndarray:
    """Pixels of one lung inside the outer PERIPHERAL_DEPTH of its largest depth from the field's border."""
    if not side.any():
        return side
    depth = ndimage.distance_transform_edt(side)
    return side & (depth <= PERIPHERAL_DEPTH * depth.max())


def relative_grey(slice01: np.ndarray, lung: np.ndarray) -> np.ndarray:
    """(H, W) grey of a slice on a scale set by the slice itself: 0 at the lung field's median grey, 1 at
    the body's soft tissue (the median of the solid class, Otsu, outside the field). Windowing and
    contrast differ between hospitals and papers; this scale does not."""
    from core.inputs.lungs import otsu

    img = np.asarray(slice01, dtype=np.float32)
    aerated = float(np.median(img[lung])) if lung.any() else float(img.min())
    outside = img[~lung]
    solid = outside[outside > otsu(outside)] if outside.size else outside
    tissue = float(np.median(solid)) if solid.size else float(img.max())
    return (img - aerated) / max(tissue - aerated, 1e-3)


def slice_signs(lesion_prob: np.ndarray, lung: np.ndarray, grey: np.ndarray | None = None,
                lung_found: bool = True, lower_zone: float = math.nan) -> Signs:
    """Signs of one slice. lesion_prob: (s, s) in [0, 1] (the stored map's grid sets s); lung: (S, S) bool
    lung field in the same frame (all True where none was found); grey: (S, S) `relative_grey` in the
    same frame for the consolidation rule (without it consolidation_share is NaN). Without a lung field
    (`lung_found` False) there is no lung to measure: every sign is 0."""
    if not lung_found:
        return Signs(0.0, 0.0, 0.0, 0.0, 0.0, 0, math.nan if grey is None else 0.0, lower_zone, False)
    s = lesion_prob.shape[-1]
    lesion = np.asarray(lesion_prob) > LESION_P
    labels, n = ndimage.label(lesion, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel())[1:] if n else np.zeros(0)
    count = int((sizes >= MIN_PIECE * s * s).sum())
    field = on_grid(lung, s) > 0.5
    inside = lesion & field
    half = s // 2
    right, left = field.copy(), field.copy()
    right[:, half:] = False  # patient's right lung = image left
    left[:, :half] = False
    share = lambda part: float((inside & part).sum() / part.sum()) if part.any() else 0.0
    r, le = share(right), share(left)
    outer = _depth_outer(right) | _depth_outer(left)
    total = int(inside.sum())
    peripheral = float((inside & outer).sum() / total) if total else 0.0
    consolidation = math.nan
    if grey is not None:
        dense = on_grid(grey, s, mode="bilinear") >= CONSOLIDATION
        consolidation = float((inside & dense).sum() / total) if total else 0.0
    return Signs(share(field), r, le, float(r >= BILATERAL_MIN and le >= BILATERAL_MIN), peripheral, count,
                 consolidation, lower_zone, True)


def signs_in_frame(slice01: np.ndarray, frame, lung: np.ndarray, lesion_u8: np.ndarray, lung_found: bool) -> Signs:
    """The signs of a slice as a run framed it: `frame` (core.inputs.boxes.Box) where the run's frame lies on
    the (H, W) slice in [0, 1]; `lung` (S, S) its lung field there; `lesion_u8` the stored lesion map
    (core.inputs.lesion_maps.lesion_map_u8). The pipeline (from its caches) and a live analysis
    (core.inference) both call this, so a slice gets the same signs either way."""
    from core.inputs.harmonise import to_frame

    grey = relative_grey(to_frame(slice01, frame, lung.shape[0]), lung)
    return slice_signs(np.asarray(lesion_u8, dtype=np.float32) / 255, lung, grey, lung_found)
