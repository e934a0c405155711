"""Infected regions to crops: lesion boxes grouped into one crop per lung.

The segmenter's mask is thresholded and split into 8-connected lesions (specks under `min_area`
of the slice are dropped). Lesions whose centre lies in the image's left half belong to the
patient's right lung (radiological convention) and vice versa; each side's crop is the padded
union of its lesion boxes. A side without lesions is marked absent: its pooled vector is zeroed in
the infected branch, and the global vector it is concatenated with carries the decision (the
paper's answer for healthy slices).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from core.inputs.boxes import Box
from core.models.network import SIDES

SIDE_NAMES = tuple(s.name for s in SIDES)  # image-left half, image-right half


@dataclass(frozen=True)
class LesionCrops:
    lesions: list[Box]  # every lesion's box
    sides: dict  # side -> Box or None (no lesion on that side)

    @property
    def present(self) -> list[bool]:
        return [self.sides[s] is not None for s in SIDE_NAMES]


def lesion_crops(prob: np.ndarray, threshold: float = 0.5, min_area: float = 2e-4, pad: float = 0.1) -> LesionCrops:
    """prob: (H, W) lesion probability. Returns the lesion boxes and one crop box per lung."""
    h, w = prob.shape
    labels, n = ndimage.label(prob > threshold, structure=np.ones((3, 3), bool))
    lesions, groups = [], {s: [] for s in SIDE_NAMES}
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        area = int((labels[sl] == i).sum())
        if area < min_area * h * w:
            continue
        box = Box(sl[0].start / h, sl[1].start / w, sl[0].stop / h, sl[1].stop / w)
        lesions.append(box)
        centre_x = (box.x0 + box.x1) / 2
        groups[SIDE_NAMES[0] if centre_x < 0.5 else SIDE_NAMES[1]].append(box)
    sides = {s: _padded_union(bs, pad) if bs else None for s, bs in groups.items()}
    return LesionCrops(lesions, sides)


def _padded_union(boxes: list[Box], pad: float) -> Box:
    y0, x0 = min(b.y0 for b in boxes), min(b.x0 for b in boxes)
    y1, x1 = max(b.y1 for b in boxes), max(b.x1 for b in boxes)
    # Pad by a share of the box, at least 3% of the slice: a lesion needs its surroundings.
    py, px = max(pad * (y1 - y0), 0.03), max(pad * (x1 - x0), 0.03)
    return Box(max(0.0, y0 - py), max(0.0, x0 - px), min(1.0, y1 + py), min(1.0, x1 + px))
