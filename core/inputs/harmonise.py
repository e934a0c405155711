"""What a network is fed: the whole slice, or the harmonised lung field (a run's `input` setting).

COVID-CT's classes come from different sources (COVID slices cut from papers, non-COVID from
other hospitals), so the frame around the lungs (zoom, borders, body outline, text) tells them
apart without any disease. `lungs` takes that frame away:

1. the lung field of the slice (core.inputs.lungs), grown by a small margin so pleural lesions stay in;
2. a square box around it with MARGIN on every side (square, so no slice is stretched), zero-padded
   where it leaves the slice;
3. intensities normalised within the lung field (its 2nd and 98th percentiles to LOW and HIGH), so a
   paper's windowing or contrast does not carry over;
4. everything outside the lung field set to 0.

`lungs+lesions` is `lungs` on the field with the run's segmenter's lesions that touch it added
(core.inputs.fields): consolidations out to the chest wall are not blanked. Its field needs the run's
segmenter, so callers pass it in (a core.inputs.fields.FieldFinder finds it).

`slice` is the slice as it is, resized (kept for comparison and for old runs).

Every consumer (training, features, predict, fidelity, the shortcut audit, the dashboard) calls
`harmonise` with the run's recorded mode, so a run is always scored the way it was trained. The
`Harmonised.box` says where the frame lies on the original slice, so masks and maps can be moved
between the two (`to_frame`, `from_frame`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from core.data.image_cache import resize01
from core.inputs.boxes import FULL, Box
from core.inputs.fields import WITH_LESIONS, needs_segmenter
from core.inputs.lungs import LUNG_VERSION, LungField, lung_field

INPUT_MODES = ("slice", "lungs", WITH_LESIONS)
MARGIN = 0.08  # of the lung box's side, on every side
GROW = 0.01  # lung mask dilation, as a fraction of the slice side (pleural lesions, partial-volume rim)
LOW, HIGH = 0.1, 0.9  # where the lung field's 2nd / 98th intensity percentiles land


def version(mode: str) -> str:
    """Part of every cache key of harmonised data: changes when the method does."""
    check_mode(mode)
    return f"{mode}-lungs{LUNG_VERSION}-g{GROW}" + ("" if mode == "slice" else f"-m{MARGIN}-n{LOW},{HIGH}")


def check_mode(mode: str) -> str:
    if mode not in INPUT_MODES:
        raise ValueError(f"unknown input mode {mode!r}; choose one of {', '.join(INPUT_MODES)}")
    return mode


@dataclass(frozen=True)
class Harmonised:
    image: np.ndarray  # (size, size) float32 in [0, 1]: what the network sees
    lung: np.ndarray  # (size, size) bool: the lung field in the frame (all True when not found)
    box: Box  # where the frame lies on the original slice (fractions; may reach outside [0, 1])
    found: bool  # was a lung field found (False: the whole slice, reported by callers)
    reason: str = ""


def square_box(field: LungField, h: int, w: int, margin: float = MARGIN) -> Box:
    """A square (in pixels) box around the lung field, `margin` of its side added on every side."""
    if not field.found:
        return FULL
    ys, xs = np.nonzero(field.mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = max(y1 - y0, x1 - x0) * (1 + 2 * margin)
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    return Box((cy - side / 2) / h, (cx - side / 2) / w, (cy + side / 2) / h, (cx + side / 2) / w)


def to_frame(arr: np.ndarray, box: Box, size: int, order: int = 1) -> np.ndarray:
    """Cut `box` (fractions, may leave the slice: zero-padded) from an (H, W) array, resized to (size, size).
    order 1: bilinear with antialiasing (images, maps); 0: nearest (masks)."""
    h, w = arr.shape
    y0, x0 = int(round(box.y0 * h)), int(round(box.x0 * w))
    y1, x1 = max(y0 + 1, int(round(box.y1 * h))), max(x0 + 1, int(round(box.x1 * w)))
    pad = max(0, -y0, -x0, y1 - h, x1 - w)
    src = np.pad(arr.astype(np.float32), pad) if pad else arr.astype(np.float32)
    part = src[y0 + pad:y1 + pad, x0 + pad:x1 + pad]
    t = torch.from_numpy(np.ascontiguousarray(part))[None, None]
    if order == 0:
        return F.interpolate(t, size=(size, size), mode="nearest")[0, 0].numpy()
    return F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0, 0].numpy()


def from_frame(arr: np.ndarray, box: Box, h: int, w: int) -> np.ndarray:
    """A map in the frame back onto the (h, w) original slice (zero outside the frame)."""
    if box == FULL:
        return resize01_any(arr, h, w)
    y0, x0, y1, x1 = (int(round(v)) for v in (box.y0 * h, box.x0 * w, box.y1 * h, box.x1 * w))
    big = resize01_any(arr, max(1, y1 - y0), max(1, x1 - x0))
    out = np.zeros((h, w), np.float32)
    sy0, sx0 = max(0, -y0), max(0, -x0)
    dy0, dx0, dy1, dx1 = max(0, y0), max(0, x0), min(h, y1), min(w, x1)
    out[dy0:dy1, dx0:dx1] = big[sy0:sy0 + dy1 - dy0, sx0:sx0 + dx1 - dx0]
    return out


def resize01_any(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()


def grown(field: LungField, grow: float = GROW) -> np.ndarray:
    if not field.found:
        return field.mask
    r = max(1, int(round(grow * max(field.mask.shape))))
    return ndimage.binary_dilation(field.mask, ndimage.generate_binary_structure(2, 1), iterations=r)


def harmonise(img01: np.ndarray, mode: str, size: int, field: LungField | None = None) -> Harmonised:
    """One (H, W) slice in [0, 1] -> what a run with input `mode` feeds its networks at `size`.
    `field`: a lung field found beforehand (the shortcut audit edits a slice but keeps the intact
    slice's lung field); by default the classical field is found here. Input `lungs+lesions` needs it
    passed: its field comes from the run's segmenter (core.inputs.fields.FieldFinder)."""
    check_mode(mode)
    if field is None and needs_segmenter(mode):
        raise ValueError(f"input {mode!r} needs the lung field passed in: it comes from the run's segmenter "
                         "(core.inputs.fields.FieldFinder)")
    field = lung_field(img01) if field is None else field
    if field.mask.shape != img01.shape:
        raise ValueError(f"lung field is {field.mask.shape}, the slice {img01.shape}")
    lung = grown(field)
    if mode == "slice":  # the slice as it is; its lung field only for the lesion-share baseline and audits
        lung_s = to_frame(lung.astype(np.float32), FULL, size, order=0) > 0.5
        return Harmonised(resize01(img01, size), lung_s, FULL, field.found, field.reason)
    if not field.found:  # the whole slice, normalised as a whole: reported by callers, never hidden
        vals = img01.ravel()
    else:
        vals = img01[lung]
    lo, hi = np.percentile(vals, [2, 98]) if vals.size else (0.0, 1.0)
    norm = LOW + (img01 - lo) * (HIGH - LOW) / max(hi - lo, 1e-3)
    norm = np.clip(norm, 0, 1) * lung
    box = square_box(field, *img01.shape)
    image = np.clip(to_frame(norm, box, size), 0, 1)
    lung_f = to_frame(lung.astype(np.float32), box, size, order=0) > 0.5
    return Harmonised(image.astype(np.float32), lung_f, box, field.found, field.reason)
