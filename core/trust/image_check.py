"""Is the image a chest CT slice at all? Checks on the slice as it arrives, before any network sees it.

The fusion-layer distance (core.trust.ood) measures how unlike the training slices an input looks *to the
network*; on the real run it flags none of the inputs that are no chest CT (core.trust.probes): a network
trained for COVID against non-COVID maps a photograph to the same few directions as a slice. So the flag also
asks the image itself, with no weights:

1. a lung field: core.inputs.lungs finds one on every COVID-CT slice; a slice where it finds none is flagged
   with its reason (noise, text, a body without lungs, and a CT slice above or below the lungs);
2. STATISTICS of the slice and its lung field, as far from COVID-CT's training slices (a Ledoit-Wolf
   Mahalanobis distance of the statistics standardised on them) as the validation slices allow (the conformal
   threshold of core.trust.ood).

Which statistics, and how they were chosen: docs/method.md (Trust). Each slice's are cached by its content
(core.data.image_cache.memoised).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from core.data.image_cache import file_hash, memoised, npy_bytes, resize01
from core.inputs.lungs import LUNG_VERSION, field_and_vessels

SIDE = 256  # the slice is measured at this size, so statistics of any upload compare
BRIGHT = 0.9  # grey above which a pixel counts as bright (bone, contrast, a figure's white)
# named statistics, in the order of a statistics vector; mirror_match: an axial chest slice is close to its
# left-right mirror, most photographs are not
STATISTICS = ("bright_share", "edge_mean", "mirror_match", "lung_share", "lung_vessels", "lung_median", "lung_spread")
VERSION = f"2-{LUNG_VERSION}"  # bump when a statistic changes: part of the cache key


@dataclass(frozen=True)
class SliceStatistics:
    lungs_found: bool
    reason: str  # why no lung field was found ("" when one was, and when read back from the cache)
    values: np.ndarray  # (len(STATISTICS),) float64; the lung ones 0 when no field was found


def measure(img01: np.ndarray) -> SliceStatistics:
    """The statistics of a (H, W) image in [0, 1]."""
    g = resize01(np.asarray(img01, np.float32), SIDE)
    field, vessels = field_and_vessels(g)
    edge = float(np.hypot(ndimage.sobel(g, 0), ndimage.sobel(g, 1)).mean())
    mirror = float(np.corrcoef(g.ravel(), g[:, ::-1].ravel())[0, 1]) if g.std() > 0 else 0.0
    lungs = (float(field.mask.mean()), vessels, float(np.median(g[field.mask])), float(g[field.mask].std())) \
        if field.found else (0.0, 0.0, 0.0, 0.0)
    return SliceStatistics(field.found, field.reason, np.array([float((g > BRIGHT).mean()), edge, mirror, *lungs]))


def measure_file(path) -> SliceStatistics:
    """`measure` of a slice file, computed once per content (the lung finder takes ~50 ms a slice)."""
    from core.data.imaging import read_slice

    def read(disk):
        arr = np.load(disk, allow_pickle=False)
        return arr if arr.shape == (len(STATISTICS) + 1,) else None

    def compute():
        s = measure(read_slice(path))
        return np.array([float(s.lungs_found), *s.values])

    arr = memoised((file_hash(path), "image-check", VERSION), f"{file_hash(path)}-image-check-{VERSION}.npy",
                   read, compute, npy_bytes)
    found = bool(arr[0])
    return SliceStatistics(found, "", arr[1:])

