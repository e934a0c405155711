import numpy as np
import pytest
import torch

from core.explain.attention import eq1_map, threshold_box, upsample_maps
from core.inputs.boxes import FULL, Box, crop
from core.inputs.lesion_crops import lesion_crops


def test_eq1_is_the_min_shifted_channel_sum_scaled_to_one():
    f = torch.rand(2, 5, 4, 4) + 3.0  # large positive floor, as real activations have
    s = f.sum(1)
    shifted = s - s.amin((1, 2), keepdim=True)
    h = eq1_map(f)
    assert torch.allclose(h, shifted / shifted.amax((1, 2), keepdim=True))
    assert torch.allclose(h.amax((1, 2)), torch.ones(2)) and float(h.min()) == 0.0


def _two_blobs():
    h = np.zeros((100, 100), np.float32)
    h[10:20, 10:30] = 0.9  # small region (200 px)
    h[50:90, 40:70] = 0.8  # large region (1200 px)
    return h


def test_threshold_keeps_the_largest_region_and_its_box():
    hc = threshold_box(_two_blobs(), 0.75)
    assert not hc.empty
    assert hc.box.as_list() == pytest.approx([0.5, 0.4, 0.9, 0.7])
    assert hc.region.sum() == 1200


def test_smaller_tau_gives_a_larger_mask_and_nothing_above_tau_gives_the_whole_slice():
    h = upsample_maps(torch.rand(1, 7, 7), 112)[0].numpy()
    areas = [threshold_box(h, t).region.sum() for t in (0.2, 0.4, 0.6)]
    assert areas[0] >= areas[1] >= areas[2]
    hc = threshold_box(np.full((10, 10), 0.5, np.float32), 0.75)
    assert hc.empty and hc.box == FULL
    with pytest.raises(ValueError, match="tau"):
        threshold_box(h, 1.5)


def test_crop_cuts_the_box_from_the_original_resolution():
    img = np.zeros((400, 400), np.float32)
    img[200:400, 0:200] = 1.0  # bottom-left quarter is white
    out = crop(img, Box(0.5, 0.0, 1.0, 0.5), 64)
    assert out.shape == (64, 64) and float(out.min()) > 0.99


def test_lesions_are_grouped_by_lung_and_absent_sides_are_flagged():
    prob = np.zeros((100, 100), np.float32)
    prob[40:50, 10:20] = 1  # image-left: the patient's right lung
    prob[60:65, 30:40] = 1
    lc = lesion_crops(prob)
    assert len(lc.lesions) == 2 and lc.present == [True, False]
    right = lc.sides["right_lung"]
    assert right.y0 < 0.40 and right.y1 > 0.65 and right.x0 < 0.10 and right.x1 > 0.40
    assert lesion_crops(np.zeros((50, 50), np.float32)).present == [False, False]
