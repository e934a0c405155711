"""core.data.dicom_place: a slice's plane and the turn to the radiological view, from Image Orientation (Patient)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from core.data.dicom_place import AXIAL, as_numbers, plane_of, radiological

SUPINE = np.arange(6 * 4, dtype=np.float32).reshape(6, 4)  # rows: patient's right to left; columns: front to back


def stored(transpose: bool, flip_rows: bool, flip_cols: bool) -> tuple[np.ndarray, tuple[float, ...]]:
    """SUPINE as a scanner may store it, and the Image Orientation (Patient) it then writes."""
    image, row, col = SUPINE, np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    if transpose:
        image, row, col = image.T, col, row
    if flip_rows:
        image, col = image[::-1, :], -col
    if flip_cols:
        image, row = image[:, ::-1], -row
    return image, tuple(row) + tuple(col)


@pytest.mark.parametrize("transpose,flip_rows,flip_cols", list(itertools.product([False, True], repeat=3)))
def test_every_stored_turn_of_an_axial_slice_reads_in_the_radiological_view(transpose, flip_rows, flip_cols):
    image, orientation = stored(transpose, flip_rows, flip_cols)
    assert plane_of(orientation) == AXIAL
    np.testing.assert_array_equal(radiological(image, orientation), SUPINE)


def test_prone_is_the_slice_turned_upside_down():
    image, orientation = stored(False, True, True)
    assert orientation == (-1.0, 0, 0, 0, -1.0, 0)  # what a prone head-first scan writes
    np.testing.assert_array_equal(image, SUPINE[::-1, ::-1])


def test_a_slightly_tilted_axial_slice_is_turned_and_other_planes_are_left_as_stored():
    tilt = np.radians(15)
    tilted = (-1.0, 0.0, 0.0, 0.0, -np.cos(tilt), np.sin(tilt))  # prone, gantry tilted 15 degrees
    np.testing.assert_array_equal(radiological(SUPINE[::-1, ::-1], tilted), SUPINE)
    coronal = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
    assert radiological(SUPINE, coronal) is SUPINE and radiological(SUPINE, None) is SUPINE


def test_malformed_numbers_are_none():
    assert as_numbers(["1", "0", "0", "0", "1", "0"], 6) == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    assert as_numbers(["1", "0", "x", "0", "1", "0"], 6) is None
    assert as_numbers([1.0, float("nan"), 0, 0, 1, 0], 6) is None
    assert as_numbers([1.0, 0.0], 6) is None and as_numbers(None, 1) is None and as_numbers("", 1) is None
