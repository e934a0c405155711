"""Radiological signs of a slice (core.knowledge.signs) on drawn lung fields and lesion maps."""
import math

import numpy as np
import torch

from core.knowledge.signs import BILATERAL_MIN, CONSOLIDATION, relative_grey, slice_signs


def two_lungs(size=112):
    """A lung field of two discs: the patient's right lung on the image's left."""
    yy, xx = np.mgrid[:size, :size]
    right = (yy - 56) ** 2 + (xx - 30) ** 2 < 22 ** 2
    left = (yy - 56) ** 2 + (xx - 82) ** 2 < 22 ** 2
    return right, left


def test_lesion_in_one_lung_is_unilateral_and_counted_on_its_side():
    right, left = two_lungs()
    lesion = np.zeros((112, 112))
    lesion[50:62, 24:36] = 1.0  # inside the image-left disc: the patient's right lung
    s = slice_signs(lesion, right | left)
    assert s.right_share > 0.05 and s.left_share == 0.0
    assert s.bilateral == 0.0 and s.lesion_count == 1
    assert math.isclose(s.lesion_share, (lesion.astype(bool) & (right | left)).sum() / (right | left).sum())


def test_lesions_in_both_lungs_are_bilateral_and_two_pieces():
    right, left = two_lungs()
    lesion = np.zeros((112, 112))
    lesion[50:62, 24:36] = 1.0
    lesion[50:62, 76:88] = 1.0
    s = slice_signs(lesion, right | left)
    assert s.right_share >= BILATERAL_MIN and s.left_share >= BILATERAL_MIN
    assert s.bilateral == 1.0 and s.lesion_count == 2


def test_a_rim_lesion_is_peripheral_and_a_core_lesion_is_not():
    right, left = two_lungs()
    field = right | left
    yy, xx = np.mgrid[:112, :112]
    r = np.sqrt((yy - 56) ** 2 + (xx - 30) ** 2)
    rim = ((r > 18) & (r < 22)).astype(float)
    core = (r < 6).astype(float)
    assert slice_signs(rim, field).peripheral_share > 0.9
    assert slice_signs(core, field).peripheral_share < 0.1


def test_consolidation_is_the_dense_part_of_the_lesion():
    right, left = two_lungs()
    field = right | left
    lesion = np.zeros((112, 112))
    lesion[40:70, 20:40] = 1.0
    grey = np.zeros((112, 112))
    grey[40:70, 20:30] = CONSOLIDATION + 0.3  # the left half of the lesion is as dense as tissue
    s = slice_signs(lesion, field, grey)
    inside = lesion.astype(bool) & field
    dense = inside & (grey >= CONSOLIDATION)
    assert math.isclose(s.consolidation_share, dense.sum() / inside.sum(), abs_tol=0.02)
    assert math.isnan(slice_signs(lesion, field).consolidation_share)  # no grey given: not measured


def test_relative_grey_is_zero_in_the_lungs_and_one_in_soft_tissue():
    img = np.full((64, 64), 0.9, np.float32)  # soft tissue
    img[:4] = 0.0  # air outside
    lung = np.zeros((64, 64), bool)
    lung[20:44, 10:30] = True
    img[lung] = 0.3
    rel = relative_grey(img, lung)
    assert np.allclose(rel[lung], 0.0) and np.isclose(np.median(rel[~lung & (img > 0.5)]), 1.0)


def test_no_lung_field_leaves_no_lung_to_measure_and_says_so():
    """A scan's neck or abdomen (no lung field): the segmenter's marks there are no lesion of the lungs. Every sign
    is 0, so the lesion-share baseline and the two-step decision's first step read no disease (SIGNS_VERSION 2;
    version 1 measured the whole frame, and COVID-CT-MD's neck and bowel slices read as diseased)."""
    lesion = np.zeros((112, 112))
    lesion[10:20, 10:20] = 1.0
    lesion[50:60, 80:100] = 1.0
    s = slice_signs(lesion, np.ones((224, 224), bool), np.zeros((224, 224)), lung_found=False)
    assert s.lung_found is False
    assert (s.lesion_share, s.right_share, s.left_share, s.bilateral, s.peripheral_share, s.lesion_count,
            s.consolidation_share) == (0.0, 0.0, 0.0, 0.0, 0.0, 0, 0.0)
    found = slice_signs(lesion, np.ones((224, 224), bool), np.zeros((224, 224)), lung_found=True)
    assert found.lesion_share > 0 and found.lesion_count == 2  # the same map in a lung field: measured


def test_the_lesion_share_baseline_of_a_slice_without_a_lung_field_is_zero():
    from core.inputs.lesion_maps import lesion_share

    prob = torch.zeros(2, 112, 112, dtype=torch.uint8)
    prob[:, 10:20, 10:20] = 255
    lungs = torch.full((2, 1, 224, 224), 255, dtype=torch.uint8)
    share = lesion_share(prob, lungs, torch.tensor([True, False]))
    assert math.isclose(float(share[0]), 100 / 112 ** 2, rel_tol=1e-6) and float(share[1]) == 0.0
