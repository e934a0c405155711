"""Explanation fidelity: metrics on hand-made maps, baselines, deletion curves, and the CLI on the tiny run."""
import csv
import json

import numpy as np
import pytest

from core.explain.attention import Box
from core.explain.fidelity import (
    baseline_map,
    centre_gaussian,
    deletion_auc,
    deletion_curves,
    deletion_inputs,
    energy_share,
    paste_map,
    pointing_hit,
    tolerance_region,
    uniform_map,
)
from train.__main__ import main


def _mask(h=20, w=20, sl=(slice(5, 10), slice(5, 10))):
    m = np.zeros((h, w), bool)
    m[sl] = True
    return m


# ---- pointing game and energy ------------------------------------------------------------------
def test_a_map_peaking_in_the_lesion_hits_and_its_energy_share_is_exact():
    mask = _mask()
    smap = np.zeros((20, 20), np.float32)
    smap[5:10, 5:10] = 2.0  # 25 px x 2 = 50 inside, at the maximum
    smap[15:20, 15:20] = 1.0  # 25 px x 1 = 25 outside
    assert pointing_hit(smap, tolerance_region(mask, 0)) == 1.0
    assert energy_share(smap, mask) == pytest.approx(50 / 75)


def test_a_map_peaking_outside_misses_unless_within_the_tolerance():
    mask = _mask()
    far = np.zeros((20, 20), np.float32)
    far[5:10, 5:10] = 1.0
    far[18, 18] = 3.0  # ~12.7 px from the lesion
    assert pointing_hit(far, tolerance_region(mask, 0)) == 0.0
    assert pointing_hit(far, tolerance_region(mask, 5)) == 0.0
    assert pointing_hit(far, tolerance_region(mask, 15)) == 1.0
    near = np.zeros((20, 20), np.float32)
    near[11, 7] = 1.0  # 2 px below the lesion's last row
    assert pointing_hit(near, tolerance_region(mask, 0)) == 0.0
    assert pointing_hit(near, tolerance_region(mask, 2)) == 1.0
    assert energy_share(near, mask) == 0.0


def test_tolerance_region_is_a_euclidean_dilation():
    dot = np.zeros((9, 9), bool)
    dot[4, 4] = True
    assert tolerance_region(dot, 0).sum() == 1
    assert tolerance_region(dot, 1).sum() == 5  # the 4-neighbours
    assert tolerance_region(dot, 1.5).sum() == 9  # and the diagonals (sqrt 2)
    assert not tolerance_region(np.zeros((9, 9), bool), 3).any()


def test_tied_maxima_score_their_share_and_an_all_zero_map_has_no_energy():
    mask = _mask()
    region = tolerance_region(mask, 0)
    assert pointing_hit(uniform_map(20, 20), region) == pytest.approx(25 / 400)
    two = np.zeros((20, 20), np.float32)
    two[7, 7] = two[15, 15] = 1.0  # one peak in, one out
    assert pointing_hit(two, region) == 0.5
    assert np.isnan(energy_share(np.zeros((20, 20)), mask))
    with pytest.raises(ValueError):
        pointing_hit(np.zeros((10, 10)), region)


# ---- baselines and pasting -----------------------------------------------------------------------
def test_baseline_maps():
    g = centre_gaussian(21, 31)
    assert g.shape == (21, 31) and np.unravel_index(g.argmax(), g.shape) == (10, 15)
    assert g.max() == pytest.approx(1.0, abs=1e-3)
    assert np.allclose(g, g[::-1, ::-1], atol=1e-6)  # symmetric about the centre
    assert g[10, 15] > g[10, 0] > 0
    centre, corner = _mask(sl=(slice(8, 12), slice(8, 12))), _mask(sl=(slice(0, 4), slice(0, 4)))
    assert pointing_hit(centre_gaussian(20, 20), tolerance_region(centre, 0)) == 1.0
    assert pointing_hit(centre_gaussian(20, 20), tolerance_region(corner, 0)) == 0.0
    # the uniform map's energy share is the lesion's area share: the chance level
    assert energy_share(uniform_map(20, 20), corner) == pytest.approx(16 / 400)
    # random blobs: the coarse grid's values, smoothly resized (a CAM-like random map)
    coarse = np.random.default_rng(0).random((4, 4))
    blobs = baseline_map("random-blobs", 40, 40, coarse)
    assert blobs.shape == (40, 40) and coarse.min() - 1e-6 <= blobs.min() <= blobs.max() <= coarse.max() + 1e-6
    assert np.abs(np.diff(blobs, axis=0)).max() < 0.2  # smooth: no pixel-to-pixel jumps
    with pytest.raises(ValueError):
        baseline_map("random-blobs", 40, 40)


def test_paste_map_puts_the_crop_map_in_its_box():
    out = paste_map(np.ones((3, 3)), Box(0.25, 0.5, 0.75, 1.0), 8, 8)
    assert out[2:6, 4:8].min() == 1.0 and out.sum() == 16


# ---- deletion ----------------------------------------------------------------------------------
def test_deletion_curve_is_monotone_and_ranks_a_faithful_map_first():
    region = np.zeros((20, 20), bool)
    region[:10, :10] = True  # the toy model looks only here (25% of the pixels)
    image = np.ones((20, 20), np.float32)
    predict = lambda batch: batch[:, region].mean(1)  # probability = mean of the region
    maps = {"faithful": region.astype(np.float32), "inverse": (~region).astype(np.float32),
            "random": uniform_map(20, 20)}
    curves = deletion_curves(predict, image, maps, steps=10, fill="zero", seed=0)
    for name, c in curves.items():
        assert len(c) == 11 and c[0] == 1.0 and c[-1] == 0.0, name
        assert np.all(np.diff(c) <= 1e-12), f"{name} not monotone: {c}"
    # 40 px per step, all inside the 100-px region: 1, 0.6, 0.2, 0, ...
    assert np.allclose(curves["faithful"][:4], [1.0, 0.6, 0.2, 0.0])
    assert deletion_auc(curves["faithful"]) == pytest.approx(0.1 * (0.8 + 0.4 + 0.1))
    aucs = {n: deletion_auc(c) for n, c in curves.items()}
    assert aucs["faithful"] < aucs["random"] < aucs["inverse"]
    assert aucs["random"] == pytest.approx(0.5, abs=0.1)


def test_deletion_inputs_fill_with_the_mean_and_remove_in_steps():
    rng = np.random.default_rng(0)
    image = rng.random((10, 10)).astype(np.float32)
    stack = deletion_inputs(image, image, steps=4, fill="mean")
    assert stack.shape == (5, 10, 10)
    assert np.array_equal(stack[0], image) and np.allclose(stack[-1], image.mean())
    removed = [(s != image).sum() for s in stack]
    assert removed == sorted(removed) and removed[2] == 50
    # the brightest half went first
    assert (image[stack[2] != image] >= np.median(image)).all()
    assert deletion_auc([1, 1]) == 1.0 and deletion_auc([1, 0]) == 0.5


# ---- the CLI on the tiny trained run ---------------------------------------------------------------
BASELINES = ("centre-gaussian", "uniform", "random-blobs")
EXPECTED_ROWS = ({("global", m) for m in ("eq1", "gradcam", *BASELINES)}
                 | {("heatmap", m) for m in ("eq1", "gradcam", *(f"box-{b}" for b in BASELINES))}
                 | {("fusion", m) for m in ("fusion-cam", *BASELINES)})


def test_fidelity_cli_writes_the_table(synthetic_run, capsys):
    rc = main(["fidelity", "--run", str(synthetic_run), "--limit", "3", "--methods", "eq1,gradcam", "--steps", "5",
               "--no-progress"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saved = json.loads((synthetic_run / "fidelity.json").read_text())
    assert printed == saved
    assert saved["n_slices"] == 3 and saved["data"].startswith("synthetic")
    rows = {(r["branch"], r["method"]): r for r in saved["rows"]}
    assert set(rows) == EXPECTED_ROWS
    for key, r in rows.items():
        assert r["n"] == 3, key
        lo, hi = r["pointing_ci"]
        assert 0 <= r["pointing_hit_rate"] <= 1 and lo - 1e-9 <= r["pointing_hit_rate"] <= hi + 1e-9, key
        assert r["mean_prob"] is not None and 0 <= r["mean_prob"] <= 1, key
        if key[0] == "heatmap":  # deletion for global and fusion by default
            assert r["deletion_auc_mean"] is None and r["deletion_curve"] is None, key
        else:
            assert r["deletion_auc_mean"] is not None and 0 <= r["deletion_auc_mean"] <= 1, key
            assert len(r["deletion_curve"]) == 6
    # chance levels: the uniform map scores the lesion and tolerance-region area shares exactly
    for branch in ("global", "fusion"):
        assert rows[(branch, "uniform")]["energy_share_mean"] == pytest.approx(saved["lesion_area_share"])
        assert rows[(branch, "uniform")]["pointing_hit_rate"] == pytest.approx(saved["tolerance_region_share"])
    with open(synthetic_run / "fidelity.csv") as f:
        table = list(csv.DictReader(f))
    assert {(r["branch"], r["method"]) for r in table} == EXPECTED_ROWS
    assert all(int(r["n"]) == 3 for r in table)


def test_fusion_deletion_starts_at_the_pipelines_own_probability(synthetic_run):
    """The fixed-routing re-run of the pipeline on the intact slice gives analyse()'s fusion probability."""
    from core.data.semiseg import read_labelled
    from core.explain.fidelity import FidelityRunner, load_labelled
    from core.inference import TrainedRun

    tr = TrainedRun.load(synthetic_run)
    img, _ = load_labelled(read_labelled(tr.run.config["data_root"], "test")[0])
    a = tr.analyse(img)
    runner = FidelityRunner(tr, ["eq1"])
    p = runner._scores(runner._fusion_predict(a), img[None])
    assert p[0] == pytest.approx(a.probs["fusion"], abs=1e-4)
    g = runner._scores(lambda t: tr.m["global"]({"image": t}), a.inputs["image"][:, 0].numpy())
    assert g[0] == pytest.approx(a.probs["global"], abs=1e-4)
    # the heatmap branch's deletion (on its crop), on request
    out = FidelityRunner(tr, ["eq1"], steps=2, deletion=["heatmap"]).run(read_labelled(tr.run.config["data_root"],
                                                                                       "test")[:1], progress=False)
    rows = {(r["branch"], r["method"]): r for r in out["rows"]}
    assert rows[("heatmap", "eq1")]["deletion_curve"][0] == pytest.approx(a.probs["heatmap"], abs=1e-4)
    assert rows[("global", "eq1")]["deletion_auc_mean"] is None


def test_fidelity_cli_bad_inputs_exit_2(tmp_path, phantom_root, capsys):
    assert main(["fidelity", "--run", str(tmp_path / "missing")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    nodata = tmp_path / "nodata"
    nodata.mkdir()
    (nodata / "config.json").write_text(json.dumps({"data_root": str(tmp_path / "nowhere")}))
    assert main(["fidelity", "--run", str(nodata)]) == 2
    assert "not found" in capsys.readouterr().err
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    (untrained / "config.json").write_text(json.dumps({"data_root": str(phantom_root)}))
    assert main(["fidelity", "--run", str(untrained)]) == 2
    assert "no pipeline configuration" in capsys.readouterr().err
    assert main(["fidelity", "--run", str(untrained), "--data-root", str(tmp_path)]) == 2
    assert "COVID-SemiSeg" in capsys.readouterr().err
    for bad in (["--methods", "eq1,nope"], ["--deletion", "nope"], ["--limit", "0"]):
        with pytest.raises(SystemExit) as exc:
            main(["fidelity", "--run", str(untrained), *bad])
        assert exc.value.code == 2
        assert bad[1].split(",")[-1] in capsys.readouterr().err
