"""What is known of one slice before any classifier: the slice, its lung field, and once a run's segmenter is
trained, its lesion map and radiological signs (the dashboard's Data page).

The slice is taken whole, resized to a square frame as input `slice` frames it (core.inputs.frames: decoded
once and cached on disk by the file's content, with its lung field). The lung field is the run's
(core.inputs.fields.FieldFinder: the classical field, or with input lungs+lesions the segmenter's lesions
that touch it added); before the segmenter exists, the classical one. The lesion map is the run's segmenter
on the whole slice at its own size and inference settings, as FieldFinder.lesions and core.inference run
it, stored on the 112 px grid a run keeps (core.inputs.lesion_maps); the signs are
core.knowledge.signs.slice_signs on that grid, with the consolidation share by `relative_grey`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.data.image_cache import resize01
from core.data.imaging import read_slice
from core.inputs.fields import FieldFinder
from core.inputs.frames import CLASSICAL, load_frames
from core.inputs.lesion_maps import lesion_map_u8
from core.knowledge.signs import Signs, relative_grey, slice_signs

FRAME = 256  # side of the frame the Data page draws


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # (S, S) uint8, the whole slice
    lung: np.ndarray  # (S, S) bool, its lung field as fed (grown); all True where none was found
    found: bool


def frame(path: str | Path, size: int = FRAME, fields: FieldFinder = CLASSICAL) -> Frame:
    f = load_frames([Path(path)], size, "slice", fields)
    return Frame(f.images[0, 0].numpy(), f.lungs[0, 0].numpy() > 127, bool(f.found[0]))


def lesion_map(model, seg, path: str | Path, device="cpu") -> np.ndarray:
    """(112, 112) lesion probabilities in [0, 1] of the segmenter `model` (SegConfig `seg`) on the whole slice."""
    from core.models.segmenter import segment

    x = torch.from_numpy(resize01(read_slice(path), seg.size))[None, None]
    prob = segment(model, x, device=device, **seg.inference)
    return lesion_map_u8(prob[:, 0])[0].float().numpy() / 255


def signs(fr: Frame, lesion: np.ndarray) -> Signs:
    """The radiological signs of a frame and its lesion map (core.knowledge.signs)."""
    return slice_signs(lesion, fr.lung, relative_grey(fr.image.astype(np.float32) / 255, fr.lung),
                       lung_found=fr.found)
