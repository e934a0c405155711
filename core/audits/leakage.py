"""Leakage audit: near-duplicate slices (perceptual hash) and patients shared across splits.

pHash: the 8x8 lowest frequencies of the DCT of a 32x32 grey copy, thresholded at their median.
Two slices whose hashes differ in at most `max_distance` of 64 bits are reported as near-duplicates;
pairs that cross splits leak test information into training, pairs that cross classes are label noise.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
from scipy.fft import dctn

from core.data.image_cache import load_resized


def phash(img32: np.ndarray) -> np.ndarray:
    """64-bit perceptual hash (bool array) of a 32x32 image."""
    low = dctn(img32.astype(np.float64), norm="ortho")[:8, :8].ravel()
    return low > np.median(low[1:])


def near_duplicates(slices, max_distance: int = 4) -> list[dict]:
    hashes = np.stack([phash(load_resized(s.path, 32)) for s in slices])
    # All pairwise Hamming distances at once: (N, 64) bools -> (N, N) counts.
    h = hashes.astype(np.int32)
    dist = h @ (1 - h).T + (1 - h) @ h.T
    out = []
    for i, j in zip(*np.nonzero(np.triu(dist <= max_distance, k=1))):
        a, b = slices[i], slices[j]
        out.append({"a": a.key, "b": b.key, "distance": int(dist[i, j]), "a_split": a.split, "b_split": b.split,
                    "cross_split": a.split != b.split, "cross_class": a.label != b.label})
    return sorted(out, key=lambda r: (r["distance"], r["a"]))


def shared_patients(slices) -> list[dict]:
    splits = defaultdict(set)
    for s in slices:
        if s.patient:
            splits[s.patient].add(s.split)
    return [{"patient": p, "splits": sorted(v)} for p, v in sorted(splits.items()) if len(v) > 1]


def audit(slices, max_distance: int = 4) -> dict:
    dups = near_duplicates(slices, max_distance)
    return {"slices": len(slices), "max_hash_distance": max_distance,
            "near_duplicates": dups,
            "cross_split_near_duplicates": sum(d["cross_split"] for d in dups),
            "cross_class_near_duplicates": sum(d["cross_class"] for d in dups),
            "patients_in_several_splits": shared_patients(slices),
            "slices_without_patient_id": sum(not s.patient for s in slices)}
