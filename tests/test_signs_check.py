"""`python -m train signs`: the radiological signs from the segmenter against the doctors' masks
(core/knowledge/signs_check.py), on drawn masks and on the phantom run."""
import json
import math
import shutil

import numpy as np
import pytest

from core.inputs.boxes import FULL, Box
from core.knowledge.signs import slice_signs
from core.knowledge.signs_check import (
    CHECKED,
    RULE,
    SIGNS_CHECK_FILE,
    agreement,
    doctors_consolidation,
    doctors_signs,
    mask_on_grid,
)
from train.__main__ import main


def drawn_slice(side=224, offset=0):
    """A slice of side `side` whose (224 px) frame starts at `offset`: a lung field of two rectangles (the
    patient's right lung on the image's left) and a 40 x 40 doctors' lesion in the right lung, half of it
    consolidation; everything on even pixels, so the 112 grid halves it exactly."""
    img = np.full((side, side), 0.8, np.float32)
    lung = np.zeros((224, 224), bool)
    lung[40:184, 20:100] = lung[40:184, 124:204] = True
    img[offset:offset + 224, offset:offset + 224][lung] = 0.2
    multi = np.zeros((side, side), np.uint8)
    multi[offset + 60:offset + 100, offset + 40:offset + 80] = 1
    multi[offset + 60:offset + 100, offset + 40:offset + 60] = 2
    return img, lung, multi


@pytest.mark.parametrize("side, offset, frame", [(224, 0, FULL), (448, 112, Box(0.25, 0.25, 0.75, 0.75))])
def test_the_doctors_mask_gives_the_signs_of_that_mask_hand_checked(side, offset, frame):
    img, lung, multi = drawn_slice(side, offset)
    s = doctors_signs(img, frame, lung, True, multi, size=224)
    # on the 112 grid: each lung 72 x 40 = 2880 pixels, the lesion 20 x 20 = 400 in the right lung
    assert math.isclose(s.lesion_share, 400 / 5760) and math.isclose(s.right_share, 400 / 2880)
    assert s.left_share == 0.0 and s.bilateral == 0.0 and s.lesion_count == 1
    on_grid = mask_on_grid(multi > 0, frame, 224)
    assert on_grid.shape == (112, 112) and set(np.unique(on_grid)) == {0, 255} and (on_grid > 0).sum() == 400
    same = slice_signs(on_grid / 255, lung)
    assert (s.lesion_share, s.right_share, s.peripheral_share, s.lesion_count) == \
           (same.lesion_share, same.right_share, same.peripheral_share, same.lesion_count)
    assert math.isclose(doctors_consolidation(multi, frame, lung, 224), 0.5)  # half the lesion is GT-2


def test_no_doctors_lesion_in_the_field_has_no_consolidation_share():
    _, lung, multi = drawn_slice()
    assert math.isnan(doctors_consolidation(np.zeros_like(multi), FULL, lung, 224))


def test_agreement_drops_missing_pairs_and_says_how_many():
    pairs = [[0.1, 0.2], [0.3, 0.2], [math.nan, 0.5], [0.5, 0.7], [0.2, math.nan]]
    a = agreement(pairs)
    assert a["n"] == 3
    seg, doc = np.array([0.1, 0.3, 0.5]), np.array([0.2, 0.2, 0.7])
    assert math.isclose(a["r"], np.corrcoef(seg, doc)[0, 1]) and math.isclose(a["mae"], np.abs(seg - doc).mean())
    assert math.isnan(agreement([[1.0, 1.0], [1.0, 0.0]])["r"])  # one side constant: no correlation
    assert agreement([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]], binary=True)["agreement"] == pytest.approx(2 / 3)
    assert agreement([])["n"] == 0 and math.isnan(agreement([])["mae"])


@pytest.fixture(scope="module")
def checked(synthetic_run, module_scratch):
    """A copy of the phantom run checked by the command with its defaults (RUN/signs_check.json)."""
    run = module_scratch("signs") / "checked"
    shutil.copytree(synthetic_run, run)
    assert main(["signs", "--run", str(run), "--device", "cpu"]) == 0
    return run


def test_the_command_writes_every_sign_of_every_test_slice(checked, phantom_root):
    from core.data.semiseg import read_labelled

    result = json.loads((checked / SIGNS_CHECK_FILE).read_text())
    slices = read_labelled(phantom_root, "test")
    assert result["split"] == "test" and result["n_slices"] == len(slices) == len(result["rows"])
    assert result["n_multiclass"] == len(slices)  # the phantoms have multi-class masks: consolidation is measured
    assert set(result["signs"]) == set(CHECKED) and set(result["not_measurable"]) == {"lower_zone"}
    assert "chosen on the train slices" in result["note"]
    for sign, summary in result["signs"].items():  # the summary is the rows' agreement
        pairs = [[math.nan if v is None else v for v in r["pairs"][sign]] for r in result["rows"]]
        again = agreement(pairs, sign == "bilateral")
        assert summary["n"] == again["n"] and summary["n"] <= len(slices)
        for k in ("mae", "r"):
            assert (summary[k] is None and math.isnan(again[k])) or math.isclose(summary[k], again[k])
    assert result["signs"]["lesion_share"]["n"] == len(slices)


def test_each_row_is_the_live_analysis_against_the_doctors_mask(checked, phantom_root):
    from core.data.imaging import read_mask, read_slice
    from core.data.semiseg import read_labelled
    from core.inference import TrainedRun

    tr = TrainedRun.load(checked)
    s = read_labelled(phantom_root, "test")[0]
    row = json.loads((checked / SIGNS_CHECK_FILE).read_text())["rows"][0]
    img = read_slice(s.image)
    a = tr.analyse(img)
    doc = doctors_signs(img, a.frame, a.lung, a.lung_found, read_mask(s.mask), tr.cfg.seg.size)
    assert row["key"] == s.key
    for k in ("lesion_share", "right_share", "left_share", "lesion_count"):
        assert row["pairs"][k] == pytest.approx([getattr(a.signs, k), getattr(doc, k)])
    multi = doctors_consolidation(read_mask(s.multiclass), a.frame, a.lung, tr.cfg.seg.size)
    if doc.lesion_share > 0:
        assert row["pairs"][RULE] == pytest.approx([doc.consolidation_share, multi])


def test_the_report_shows_the_signs_table(checked, synthetic_run, capsys):
    assert main(["report", str(checked), "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    section = out.split("### Radiological signs against the doctors' masks (`signs_check.json`")[1].split("\n### ")[0]
    assert "| lesion share (both lungs) |" in section and "| consolidation share |" in section
    assert "Not measurable: lower zone" in section
    assert main(["report", str(synthetic_run), "--bootstrap", "0"]) == 0
    assert "Radiological signs against the doctors' masks" not in capsys.readouterr().out


def test_without_multiclass_masks_consolidation_is_not_measurable(checked, phantom_root, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(phantom_root / "semiseg", root / "semiseg")
    shutil.rmtree(root / "semiseg" / "TestingSet" / "MultiClassInfection-Test" / "GT")
    out = tmp_path / "check.json"
    assert main(["signs", "--run", str(checked), "--data-root", str(root), "--out", str(out), "--device", "cpu"]) == 0
    result = json.loads(out.read_text())
    assert result["n_multiclass"] == 0
    for k in ("consolidation_share", RULE):
        assert k not in result["signs"] and "no multi-class masks" in result["not_measurable"][k]
    assert result["signs"]["lesion_share"]["n"] == result["n_slices"]
    assert json.loads(capsys.readouterr().out)["not_measurable"]["consolidation_share"]  # the printed summary


def test_a_run_without_a_segmenter_is_one_error_line(synthetic_run, tmp_path, capsys):
    run = tmp_path / "no-segmenter"
    run.mkdir()
    shutil.copyfile(synthetic_run / "config.json", run / "config.json")
    assert main(["signs", "--run", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "no segmenter" in err[0]
    assert not (run / SIGNS_CHECK_FILE).exists()
