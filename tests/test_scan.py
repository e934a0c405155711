"""The scan engine (core.knowledge.scan).

Arithmetic on drawn analyses and hand-made tables, whose answers are counted here by hand; then phantom
series (tests.phantom_series: lesions in the right lung only) written as DICOM and NIfTI and scored by the
session's synthetic run. Its few-epoch segmenter finds no lesion on them, so the test of the opacity per
lung hands the run's analysis the phantom's own lesion mask (everything else is the run's).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from core.inputs.boxes import Box
from core.knowledge.scan import AREAS, RULE, ScanRule, decide, score_volume, slice_row, summarise, with_zones
from tests.dicom_series import write_series
from tests.phantom_series import dicom_series, nifti_bytes, right_lung_lesions

PIXEL_SPACING = (0.8, 0.7)  # mm between rows, between columns: what tests.phantom_series writes


class DrawnRun:
    """A 'trained run' whose analysis of any slice is the one given (the frame, lung field and lesion map)."""

    def __init__(self, lung, frame, lesion_prob, found=True, probs=None):
        from core.knowledge.signs import slice_signs

        self.a = SimpleNamespace(lung=lung, frame=frame, lesion_prob=lesion_prob, lung_found=found,
                                 probs=probs or {"global": 0.3, "fusion": 0.6}, factors=None,
                                 signs=slice_signs(lesion_prob, lung, None, found))

    def analyse(self, slice01):
        return self.a


def test_areas_of_each_lung_in_slice_pixels_and_mm2():
    """A 100 x 80 slice; the frame covers rows 10-60 and columns 16-64 (50 x 48 slice pixels) on a 10-cell grid:
    a cell is 5 x 4.8 = 24 slice pixels, a pixel 0.8 x 0.7 = 0.56 mm^2."""
    lesion = np.zeros((10, 10), np.float32)
    lesion[2:4, 1:4] = 0.9  # 6 cells, image left = the patient's right lung
    run = DrawnRun(np.ones((20, 20), bool), Box(0.1, 0.2, 0.6, 0.8), lesion)
    row = slice_row(run, np.random.default_rng(0).random((100, 80)).astype(np.float32), PIXEL_SPACING)
    assert row["right_lung_px"] == pytest.approx(50 * 24) and row["left_lung_px"] == pytest.approx(50 * 24)
    assert row["right_lesion_px"] == pytest.approx(6 * 24) and row["left_lesion_px"] == 0
    assert row["right_lesion_mm2"] == pytest.approx(6 * 24 * 0.56)
    assert row["right_lung_mm2"] == pytest.approx(50 * 24 * 0.56)
    assert row["right_share"] == pytest.approx(6 / 50) and row["lesion_share"] == pytest.approx(6 / 100)
    assert (row["p_global"], row["p_fusion"]) == (0.3, 0.6) and row["lung_found"]
    no_spacing = slice_row(run, np.zeros((100, 80), np.float32), None)
    assert math.isnan(no_spacing["right_lesion_mm2"]) and no_spacing["right_lesion_px"] == pytest.approx(144)


def hand_table(positions, lung, lesion_right, lesion_left, p, found=None) -> pd.DataFrame:
    n = len(positions)
    rows = pd.DataFrame({"index": range(n), "position_mm": positions, "file": [f"f{i}" for i in range(n)],
                         "problem": "", "lung_found": found if found is not None else [True] * n, "p_fusion": p,
                         "right_lung_px": lung, "left_lung_px": lung, "right_lesion_px": lesion_right,
                         "left_lesion_px": lesion_left})
    rows["right_share"] = rows.right_lesion_px / rows.right_lung_px
    rows["left_share"] = rows.left_lesion_px / rows.left_lung_px
    for col in AREAS:
        if col.endswith("mm2"):
            rows[col] = rows[col.replace("mm2", "px")] * 0.5
    return rows


def test_zones_opacity_and_lower_zone_share():
    # Ten slices 10 mm apart, foot to head; the first and last have too little lung to be in the lung extent
    # (under EXTENT_MIN of the largest), so the extent runs from 10 to 80 mm: thirds cut at 33.3 and 56.7 mm.
    lung = [5, 100, 100, 100, 100, 100, 100, 100, 100, 5]
    right = [0, 20, 10, 0, 0, 0, 0, 0, 0, 0]
    left = [1, 0, 0, 0, 0, 5, 0, 0, 4, 0]
    t = with_zones(hand_table(np.arange(10) * 10.0, lung, right, left, [0.1] * 10), positional=True)
    assert list(t.zone) == ["lower"] * 4 + ["middle"] * 2 + ["upper"] * 4
    assert list(t.lower_zone) == [1.0] * 4 + [0.0] * 6
    s = summarise(t, "fusion", 0.5)
    assert s.opacity["right"] == pytest.approx(30 / 810) and s.opacity["left"] == pytest.approx(10 / 810)
    assert s.lesion_mm2["right"] == pytest.approx(15) and s.lung_mm2["left"] == pytest.approx(405)
    assert s.zones == pytest.approx({"lower": 31 / 40, "middle": 5 / 40, "upper": 4 / 40})
    # Without positions (an instance-number order) there is no foot or head: no zones, the rest stands
    t = with_zones(hand_table([math.nan] * 10, lung, right, left, [0.1] * 10), positional=False)
    assert set(t.zone) == {""} and t.lower_zone.isna().all()
    s = summarise(t, "fusion", 0.5)
    assert all(math.isnan(v) for v in s.zones.values()) and s.opacity["right"] == pytest.approx(30 / 810)


def test_slices_without_a_lung_field_count_nowhere():
    found = [True, False, True]
    t = with_zones(hand_table([0.0, 5.0, 10.0], [100, 100, 100], [10, 90, 10], [0, 0, 0], [0.2, 0.99, 0.4], found),
                   positional=True)
    s = summarise(t, "fusion", 0.5)
    assert s.opacity["right"] == pytest.approx(20 / 200) and s.with_lung == 2 and s.slices == 3
    assert s.decision.top == [2] and s.decision.statistic == pytest.approx(0.4)  # not slice 1's 0.99
    none = summarise(with_zones(hand_table([0.0], [100], [10], [0], [0.9], [False]), True), "fusion", 0.5)
    assert none.decision.covid is None and none.decision.label == "no decision"
    assert math.isnan(none.opacity["right"])
    unread = with_zones(pd.DataFrame({"index": [0], "position_mm": [0.0], "file": ["f0"], "problem": ["f0: broken"]}),
                        True)  # no slice could be scored: no p column at all
    assert summarise(unread, "fusion", 0.5).decision.label == "no decision"


def test_the_rule_is_the_mean_of_the_top_share_against_the_operating_point():
    p = [0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.4, 0.6, 0.5, 0.55, 0.05, 0.15, 0.25, 0.35, 0.45, 0.65, 0.75, 0.85, 0.95, 0.0]
    t = with_zones(hand_table(np.arange(20.0), [100] * 20, [0] * 20, [0] * 20, p), True)
    k = math.ceil(RULE.top_share * 20)  # the rule's share of the 20 slices, at least one
    order = list(np.argsort(p)[::-1][:k])
    d = decide(t, "fusion", 0.9)
    assert d.top == order and d.statistic == pytest.approx(np.mean(np.asarray(p)[order]))
    assert d.covid is (d.statistic >= 0.9) and decide(t, "fusion", d.statistic + 0.01).covid is False
    assert decide(t, "fusion", d.statistic - 0.01).label == "COVID-19"
    quarter = ScanRule("top-quarter mean", 0.25)
    assert quarter.statistic(t, "fusion") == pytest.approx(np.mean([0.95, 0.9, 0.85, 0.8, 0.75]))
    assert f"top {RULE.top_share:.0%}" in d.words and "0.900" in d.words and "fusion" in d.words


# ---- phantom series scored by the synthetic run ---------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(synthetic_run):
    from core.inference import TrainedRun

    return TrainedRun.load(synthetic_run)


@pytest.fixture(scope="module")
def phantom_scan():
    return right_lung_lesions(6, size=96, seed=3)


@pytest.fixture(scope="module")
def series_folder(phantom_scan, tmp_path_factory):
    folder = tmp_path_factory.mktemp("scan") / "series"
    paths = write_series(folder, dicom_series(phantom_scan))  # shuffled file names; paths in body order
    return folder, paths


def test_every_slice_one_row_in_body_order(trained, series_folder):
    from core.data.series import read_series

    folder, paths = series_folder
    vol = read_series(folder).volumes[0]
    seen = []
    table = score_volume(trained, vol, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(k, 6) for k in range(1, 7)]
    assert list(table["index"]) == list(range(6)) and list(table.file) == [str(p) for p in paths]
    assert list(table.position_mm) == pytest.approx([-100.0 + 5.0 * k for k in range(6)])
    assert (table.problem == "").all() and table.lung_found.all()
    direct = trained.analyse(vol.image(3)).probs
    assert {f"p_{b}" for b in direct} <= set(table.columns)
    assert {b: table.at[3, f"p_{b}"] for b in direct} == pytest.approx(direct)  # the run's own preprocessing
    assert list(table.lower_zone) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]  # the lowest third of the lung extent
    s = summarise(table, "fusion", 0.5)
    k = math.ceil(RULE.top_share * 6)  # the rule's share of the 6 slices, at least one
    assert s.decision.top == [int(i) for i in table.p_fusion.sort_values(ascending=False).index[:k]]
    assert s.decision.covid == (table.p_fusion.nlargest(k).mean() >= 0.5)


def test_the_segmenter_alone_measures_the_lesions_as_the_finished_run(trained, series_folder, synthetic_run):
    """While a run's classifiers train, a scan is read by its segmenter alone (core.inference.LesionReader): the same
    lesion share, signs and areas as the whole run gives, no classifier's p(COVID), and a summary without a decision."""
    from core.data.series import read_series
    from core.inference import LesionReader
    from core.knowledge.scan import AREAS, SIGNS
    from core.models.network import SEGMENTER

    vol = read_series(series_folder[0]).volumes[0]
    whole = score_volume(trained, vol)
    reader = LesionReader(trained.cfg, trained.fields, trained.m[SEGMENTER])
    alone = score_volume(reader, vol)
    assert [c for c in alone.columns if c.startswith("p_")] == ["p_lesion-share"]
    same = ["index", "position_mm", "lung_found", "p_lesion-share", "zone", *SIGNS, *AREAS]
    pd.testing.assert_frame_equal(alone[same], whole[same])
    a, b = reader.analyse(vol.image(2)), trained.analyse(vol.image(2))
    assert a.lesion_prob.max() > 0 and np.array_equal(a.lesion_prob, b.lesion_prob)  # the segmenter's own map
    assert a.frame == b.frame and np.array_equal(a.lung, b.lung)
    s, t = summarise(alone, None), summarise(whole, "fusion", 0.5)
    assert s.decision is None and t.decision is not None
    assert (s.opacity, s.zones, s.with_lung) == (t.opacity, t.zones, t.with_lung)


class OracleLesions:
    """The synthetic run with its segmenter's lesion map replaced by the phantom's own mask (cut to the
    analysis' frame on the map's grid): every other part of the analysis is the run's."""

    def __init__(self, tr, volume, masks):
        self.tr = tr
        self.masks = {hashlib.sha1(volume.image(i).tobytes()).hexdigest(): m for i, m in enumerate(masks)}

    def analyse(self, slice01):
        from core.inputs.harmonise import to_frame

        from core.inputs.lesion_maps import LESION_MAP_SIZE
        from core.knowledge.signs import signs_in_frame

        a = self.tr.analyse(slice01)
        mask = self.masks[hashlib.sha1(slice01.tobytes()).hexdigest()]
        stored = (to_frame(mask.astype(np.float32), a.frame, LESION_MAP_SIZE, order=0) * 255).round()
        return replace(a, lesion_prob=to_frame(mask.astype(np.float32), a.frame, a.lesion_prob.shape[-1], order=0),
                       signs=signs_in_frame(slice01, a.frame, a.lung, stored, a.lung_found))


def test_opacity_per_lung_on_the_phantoms_lesion_side(trained, series_folder, phantom_scan):
    from core.data.series import read_series

    vol = read_series(series_folder[0]).volumes[0]
    assert vol.pixel_spacing == pytest.approx(PIXEL_SPACING)
    s = summarise(score_volume(OracleLesions(trained, vol, phantom_scan.lesion), vol), "fusion", 0.5)
    assert s.opacity["left"] == 0 and s.lesion_mm2["left"] == 0
    assert s.opacity["right"] > 0.02
    truth_mm2 = sum(int(m.sum()) for m in phantom_scan.lesion) * PIXEL_SPACING[0] * PIXEL_SPACING[1]
    assert s.lesion_mm2["right"] == pytest.approx(truth_mm2, rel=0.1)  # the map's grid is coarser than the slice
    assert s.opacity["right"] == pytest.approx(s.lesion_mm2["right"] / s.lung_mm2["right"])


def test_a_nifti_of_the_scan_scores_as_its_dicom_series(trained, series_folder, phantom_scan):
    from core.data.series import read_nifti, read_series

    dicom = score_volume(trained, read_series(series_folder[0]).volumes[0])
    nifti = score_volume(trained, read_nifti(nifti_bytes(phantom_scan), "scan.nii"))
    assert len(nifti) == len(dicom) and (nifti.file == "scan.nii").all()
    assert np.diff(nifti.position_mm).tolist() == pytest.approx(np.diff(dicom.position_mm).tolist())
    numbers = [c for c in dicom.columns if c.startswith("p_") or c.endswith(("_px", "_share"))]
    pd.testing.assert_frame_equal(nifti[numbers], dicom[numbers], atol=1e-5)


def test_an_unreadable_slice_keeps_its_row(trained, phantom_scan, tmp_path):
    from core.data.series import read_series

    datasets = dicom_series(phantom_scan)
    datasets[2].PixelData = datasets[2].PixelData[:100]  # the header is sound, the pixels are cut short
    write_series(tmp_path, datasets)
    vol = read_series(tmp_path).volumes[0]
    table = score_volume(trained, vol)
    assert len(table) == 6
    assert table.at[2, "problem"].startswith(vol.slices[2].name) and "cannot be decoded" in table.at[2, "problem"]
    assert (table.problem.drop(2) == "").all() and not table.at[2, "lung_found"]
    s = summarise(table, "fusion", 0.5)
    assert s.problems == 1 and s.with_lung == 5 and 2 not in s.decision.top


def test_the_rule_is_chosen_on_the_selection_patients_only():
    from core.data.ctmd import REPORT, SELECTION
    from core.knowledge.scan import CANDIDATE_SHARES, selection_table

    covid = with_zones(hand_table(np.arange(10.0), [100] * 10, [0] * 10, [0] * 10, [0.9, 0.8] + [0.1] * 8), True)
    clean = with_zones(hand_table(np.arange(10.0), [100] * 10, [0] * 10, [0] * 10, [0.6] + [0.2] * 9), True)
    tables = {SELECTION[0]: covid, SELECTION[1]: clean}
    t = selection_table(tables, {SELECTION[0]: 1, SELECTION[1]: 0}, "fusion", 0.5)
    assert len(t) == 2 * len(CANDIDATE_SHARES) and RULE.name in set(t.rule)
    top10 = t[t.top_share == 0.10].set_index("patient")
    assert top10.statistic.to_dict() == pytest.approx({SELECTION[0]: 0.9, SELECTION[1]: 0.6})
    assert top10.right.to_dict() == {SELECTION[0]: True, SELECTION[1]: False}
    assert top10.margin.to_dict() == pytest.approx({SELECTION[0]: 0.4, SELECTION[1]: -0.1})
    all_slices = t[t.top_share == 1.0].set_index("patient")
    assert all_slices.right.to_dict() == {SELECTION[0]: False, SELECTION[1]: True}  # the mean of every slice
    with pytest.raises(ValueError, match=REPORT[0]):
        selection_table({**tables, REPORT[0]: covid}, {SELECTION[0]: 1, SELECTION[1]: 0, REPORT[0]: 1}, "fusion", 0.5)
