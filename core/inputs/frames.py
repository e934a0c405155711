"""Many slices as a run's networks see them (core.inputs.harmonise), decoded once and cached.

`load_frames(paths, size, mode, fields)` gives the uint8 images, the lung fields in the frame, the frame
boxes on the original slices and whether a lung field was found (mode `slice` too: its lung
fields serve the lesion-share baseline). Entries are cached beside the decode cache
(core.data.image_cache), keyed by the file's content hash, the size, the method's version
(core.inputs.harmonise.version) and the field finder's key (core.inputs.fields: input `lungs+lesions`
names its segmenter there), so changing the method or the segmenter never serves stale frames.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch

from core.data.image_cache import file_hash, load_resized, load_stack, memoised
from core.data.imaging import read_slice
from core.inputs.boxes import Box
from core.inputs.fields import FieldFinder, needs_segmenter
from core.inputs.harmonise import harmonise, version

CLASSICAL = FieldFinder()  # the classical lung field: every input mode but lungs+lesions


@dataclass
class Frames:
    images: torch.Tensor  # (N, 1, S, S) uint8
    lungs: torch.Tensor  # (N, 1, S, S) uint8 0/255
    boxes: torch.Tensor  # (N, 4) float: y0, x0, y1, x1 of each frame on its slice
    found: torch.Tensor  # (N,) bool

    def box(self, i: int) -> Box:
        return Box(*(float(v) for v in self.boxes[i]))


_FIELDS = ("image", "lung", "box", "found")


def _npz_bytes(entry: dict) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **entry)
    return buf.getvalue()


def _entry(path, size: int, mode: str, fields: FieldFinder = CLASSICAL) -> dict:
    if needs_segmenter(mode) and not fields.key:
        raise ValueError(f"input {mode!r} needs the run's FieldFinder (its segmenter), not the classical field")
    key = (file_hash(path), size, version(mode) + fields.key)

    def read(disk):
        with np.load(disk, allow_pickle=False) as z:
            entry = {k: z[k] for k in _FIELDS}
        return entry if entry["image"].shape == (size, size) else None

    def compute():
        img = read_slice(path)
        h = harmonise(img, mode, size, fields(img))
        return {"image": (h.image * 255).round().astype(np.uint8), "lung": h.lung.astype(np.uint8) * 255,
                "box": np.array(h.box.as_list(), np.float32), "found": np.array(h.found)}

    return memoised(key, f"{key[0]}-{size}-{key[2]}.npz", read, compute, _npz_bytes)


def load_frames(paths, size: int, mode: str, fields: FieldFinder = CLASSICAL) -> Frames:
    """`fields`: how each slice's lung field is found (the run's FieldFinder; input lungs+lesions needs one)."""
    entries = [_entry(p, size, mode, fields) for p in paths]
    return Frames(torch.from_numpy(np.stack([e["image"] for e in entries]))[:, None],
                  torch.from_numpy(np.stack([e["lung"] for e in entries]))[:, None],
                  torch.from_numpy(np.stack([e["box"] for e in entries])),
                  torch.from_numpy(np.stack([e["found"] for e in entries])).bool())


def load_images(paths, size: int, mode: str, fields: FieldFinder = CLASSICAL) -> torch.Tensor:
    """(N, 1, S, S) uint8 images alone (the crops' high-resolution copy): a slice run's are the plain
    decoded slices, so no lung field is found for them."""
    return load_stack(paths, size) if mode == "slice" else load_frames(paths, size, mode, fields).images


def frame_image(path, size: int, mode: str, fields: FieldFinder = CLASSICAL) -> np.ndarray:
    """(size, size) uint8 of one slice as the run sees it (the dashboard's thumbnails)."""
    return load_resized(path, size) if mode == "slice" else _entry(path, size, mode, fields)["image"]


def frame_lung(path, size: int, mode: str, fields: FieldFinder = CLASSICAL) -> np.ndarray | None:
    """(size, size) bool lung field on the frame a run sees, or None: a slice run uses no lung field."""
    return None if mode == "slice" else _entry(path, size, mode, fields)["lung"] > 127
