"""The pictures of a scan slice on the Scan page: the slice as read (the lung window), with the lung field,
the lesions and the fusion CAM mapped back from the analysis' frame onto it (core.inputs.harmonise.from_frame).

Pure drawing, as core.pictures.slice_images: arrays in, PNG bytes out; no Streamlit and no model calls.
"""
from __future__ import annotations

import numpy as np

from core.inputs.harmonise import from_frame
from core.pictures import images as im

SHOWN = 384  # px: the slice scroller's pictures
THUMB = 160  # px: the slices that drive the decision


def slice_pictures(slice01: np.ndarray, a, cam: np.ndarray | None, size: int = SHOWN) -> dict[str, bytes]:
    """slice: the slice with its lung field outlined (cyan); lesion: the segmenter's lesions (p > 0.5);
    cam: the fusion CAM (the decision's map). a: its SliceAnalysis (or the segmenter's alone,
    core.inference.LesionAnalysis); cam: TrainedRun.fusion_cam(a), None before the run has one (no "cam" drawn)."""
    h, w = slice01.shape
    lesion = from_frame(a.lesion_prob, a.frame, h, w)
    out = {"lesion": im.lesion_overlay(slice01, lesion, size=size)}
    if cam is not None:
        out["cam"] = im.cam_overlay(slice01, from_frame(cam, a.frame, h, w), size=size)
    lung = a.field_on_slice.mask if a.lung_found else np.zeros((h, w), bool)
    out["slice"] = im.outline(im.grey_rgb(slice01, size)[..., 0], lung)
    return {k: im.to_png(v) for k, v in out.items()}


def thumbnail(slice01: np.ndarray, size: int = THUMB) -> bytes:
    return im.to_png(im.grey_rgb(slice01, size))
