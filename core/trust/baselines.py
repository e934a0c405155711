"""Maps that know no model, scored beside every method: what passing a test without the model looks like.

uniform  a flat map. Its ties are broken at random (below), so it orders pixels at random: chance.
random   random values on a grid as coarse as a CAM's, resized bilinearly (core.explain.fidelity.random_blobs):
         a random map with a CAM's smoothness, fixed per slice (its seed), so it never follows the model.
edge     the Sobel gradient magnitude of the image the branch is fed: it follows the slice's edges, lesion rims
         included, and knows nothing of the model (Adebayo et al. 2018: an edge detector localises well).

Every map, a method's or a baseline's, gets a tie-break of at most TIE_BREAK of its range, fixed per slice:
flat regions (a ReLU'd CAM's zeros, a flat map) are ordered at random, as core.explain.fidelity breaks its
ties, and Quantus, which refuses a constant map, scores a map that shows nothing as a random order.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from core.explain.fidelity import BLOB_STRIDE, random_blobs, uniform_map

BASELINES = ("uniform", "random", "edge")
TIE_BREAK = 1e-6  # of a map's [0, 1] range: below any difference a method draws


def tie_break(h: int, w: int, seed: int) -> np.ndarray:
    """(h, w) values in [0, TIE_BREAK), the same for every map of one slice."""
    return (np.random.default_rng([seed, 1]).random((h, w)) * TIE_BREAK).astype(np.float32)


def is_flat(smap: np.ndarray) -> bool:
    """A map that shows nothing: all of its range is the tie-break's (a CAM that is zero everywhere)."""
    return float(np.ptp(smap)) <= 2 * TIE_BREAK


def edge_map(image: np.ndarray) -> np.ndarray:
    """The Sobel gradient magnitude of an (H, W) image, scaled to [0, 1] (all zero on a flat image)."""
    img = np.asarray(image, np.float64)
    mag = np.hypot(ndimage.sobel(img, axis=0), ndimage.sobel(img, axis=1))
    top = mag.max()
    return (mag / top if top > 0 else mag).astype(np.float32)


def random_map(h: int, w: int, seed: int, image_size: int) -> np.ndarray:
    """Smooth random values in [0, 1): one per cell of a CAM's grid (image_size / BLOB_STRIDE a side)."""
    grid = max(2, image_size // BLOB_STRIDE)
    return random_blobs(np.random.default_rng([seed, 2]).random((grid, grid)), h, w)


def baseline_map(name: str, image: np.ndarray, seed: int, image_size: int) -> np.ndarray:
    """The baseline `name` over an (H, W) image in [0, 1] (without the tie-break)."""
    h, w = np.shape(image)
    if name == "uniform":
        return uniform_map(h, w)
    if name == "random":
        return random_map(h, w, seed, image_size)
    if name == "edge":
        return edge_map(image)
    raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
