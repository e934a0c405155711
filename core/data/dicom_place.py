"""Where a DICOM slice lies in the patient, from its header: the numbers of a field (a classic file's top level, or
an Enhanced CT frame's functional groups), its plane, and the turn that shows an axial slice in the radiological
view the networks were trained on.

    frame_numbers(ds, k, "PlaneOrientationSequence", "ImageOrientationPatient", 6)   # frame k's, else the top level's
    plane_of(orientation)                                                             # "axial", "coronal", ...
    radiological(image, orientation)                                                  # anterior up, patient's right left

DICOM's patient axes: x runs from the patient's right to left, y from front to back, z from foot to head. A scan
taken prone (face down) stores its slices upside down, and some feet-first scans store them mirrored; a viewer shows
them as stored, but the networks, the lung finder's right and left lungs and the signs read the supine head-first
view every training slice has.
"""
from __future__ import annotations

import math

import numpy as np

# A slice plane by the patient axis its normal lies along; within 30 degrees of one it is that plane, else oblique.
PLANES = ("sagittal", "coronal", "axial")
PLANE_COSINE = math.cos(math.radians(30))
AXIAL = "axial"


def frame_groups(ds, k: int) -> list:
    """The functional groups that describe frame k of an enhanced multi-frame DICOM (Enhanced CT): its own
    (Per-frame Functional Groups), then the ones every frame shares; [] for a classic file."""
    groups = []
    per = ds.get("PerFrameFunctionalGroupsSequence")
    if per is not None and 0 <= k < len(per):
        groups.append(per[k])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    return groups


def frame_field(ds, k: int, sequence: str, keyword: str):
    """A field of frame k kept in a functional group's `sequence` (the frame's own first), or None."""
    for group in frame_groups(ds, k):
        items = group.get(sequence)
        if items and keyword in items[0]:
            return items[0].get(keyword)
    return None


def as_numbers(value, n: int) -> tuple[float, ...] | None:
    """A field's value as n finite numbers, or None when absent or malformed."""
    try:
        if value is None or value == "":
            return None
        values = tuple(float(v) for v in (value if n > 1 else [value]))
    except (TypeError, ValueError):
        return None
    return values if len(values) == n and all(math.isfinite(v) for v in values) else None


def header_numbers(ds, keyword: str, n: int) -> tuple[float, ...] | None:
    """A top-level header field of n finite numbers, or None when absent or malformed."""
    return as_numbers(ds.get(keyword), n)


def frame_numbers(ds, k: int, sequence: str, keyword: str, n: int) -> tuple[float, ...] | None:
    """A field of frame k from its functional groups, else the top level's, as n finite numbers (or None)."""
    return as_numbers(frame_field(ds, k, sequence, keyword), n) or header_numbers(ds, keyword, n)


def frame_orientation(ds, k: int) -> tuple[float, ...] | None:
    """Image Orientation (Patient) of frame k (a single-frame file: k = 0): row then column direction cosines."""
    return frame_numbers(ds, k, "PlaneOrientationSequence", "ImageOrientationPatient", 6)


def plane_of(orientation: tuple[float, ...] | None) -> str | None:
    """The plane of slices with this Image Orientation (Patient): PLANES' or "oblique"; None without one."""
    if orientation is None:
        return None
    normal = np.cross(orientation[:3], orientation[3:])
    length = float(np.linalg.norm(normal))
    if length == 0:
        return None
    axis = int(np.argmax(np.abs(normal)))
    return PLANES[axis] if abs(normal[axis]) / length >= PLANE_COSINE else "oblique"


def radiological(image: np.ndarray, orientation: tuple[float, ...] | None) -> np.ndarray:
    """An axial slice turned to the radiological view (rows from the patient's right to left, columns from front to
    back: anterior up, the patient's right on the image's left) by flips and a transpose; a slice of another plane,
    or without an orientation, as stored."""
    if plane_of(orientation) != AXIAL:
        return image
    row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    if abs(row[1]) > abs(row[0]):  # rows run front to back: swap the image's axes
        image, row, col = image.T, col, row
    if row[0] < 0:
        image = image[:, ::-1]
    if col[1] < 0:
        image = image[::-1, :]
    return np.ascontiguousarray(image)
