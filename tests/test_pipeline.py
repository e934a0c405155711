"""Algorithm 2 end to end on phantoms: stages, caches, reuse, prediction on new files."""
import json
from dataclasses import replace

import numpy as np
import pytest

from core.config import PipelineConfig
from core.data.imaging import read_slice
from core.inference import TrainedRun
from core.pipeline import Pipeline
from core.results.predictions import BRANCHES, DECISIONS, evaluate_run
from core.runs import feature_cache as fc
from core.runs.run_view import RunView
from core.runs.runfolder import RunFolder

SCORED = set(BRANCHES) - set(DECISIONS)  # a run that decides by fusion (the synthetic run) scores every other column


def test_every_stage_and_branch_is_trained_and_cached(synthetic_run):
    for stage in ("global", "heatmap", "infnet", "infected", "global+heatmap", "fusion"):
        assert (synthetic_run / stage / "best.pt").exists(), stage
    for name in ("global", "heatmap-crops", "heatmap", "lesions", "fusion", "fusion-cam"):
        assert list((synthetic_run / "features").glob(f"{name}-*.pt")), name
    report = evaluate_run(RunFolder(synthetic_run), "test", n_boot=20)
    assert set(report) == SCORED
    seg = json.loads((synthetic_run / "infnet" / "metrics.json").read_text())  # the run's seg settings reached Algorithm 1
    assert seg["config"]["ignore_band"] == [0.2, 0.8] and seg["config"]["labelled_share"] == 0.75
    assert seg["rounds"] == 2 and json.loads((synthetic_run / "infnet" / "train" / "round-002" / "summary.json").read_text())["steps"] == 3
    fusion = fc.current(synthetic_run / "features", "fusion")
    n = len(fusion["keys"])
    k = fusion["vectors"]["g"].shape[1]
    assert fusion["standardised"].shape == (n, 4 * k + 2)  # [global, heatmap, right, left, present]
    cam = fc.current(synthetic_run / "features", "fusion-cam")["cam"]
    assert cam.shape[0] == n and float(cam.max()) <= 1.0 + 1e-3


def test_a_second_run_reuses_every_stage_and_cache(synthetic_run, phantom_root):
    run = RunFolder(synthetic_run)
    cfg = PipelineConfig.of_run(run)
    before = {p.name: p.stat().st_mtime_ns for p in (synthetic_run / "features").glob("*.pt")
              if not p.name.startswith(("fusion", "heatmap-", "embedding"))}
    predictions = (synthetic_run / "predictions.csv").read_bytes()
    timings = Pipeline(run, phantom_root, cfg, progress=False).run_all()
    trained = {"global", "heatmap", "infnet", "infected", "global+heatmap", "fusion"} & set(timings)
    assert not trained, f"stages retrained: {trained}"
    # the first process scored with the models it had just trained (channels-last while training), the second with
    # them read back: the same bytes, so the stages after training keyed on predictions.csv stay done
    assert (synthetic_run / "predictions.csv").read_bytes() == predictions
    assert "precompute" not in timings
    after = {p.name: p.stat().st_mtime_ns for p in (synthetic_run / "features").glob("*.pt") if p.name in before}
    assert after == before


def test_a_new_tau_makes_a_new_crop_cache_entry(synthetic_run, phantom_root):
    run = RunFolder(synthetic_run)
    cfg = replace(PipelineConfig.of_run(run), tau=0.3)
    pipe = Pipeline(run, phantom_root, cfg, progress=False)
    g = pipe.global_model()
    gfeat = pipe.global_features(g)
    n_before = len(list((synthetic_run / "features").glob("heatmap-crops-*.pt")))
    crops = pipe.heatmap_crops(gfeat)
    assert len(list((synthetic_run / "features").glob("heatmap-crops-*.pt"))) == n_before + 1
    areas = (crops["boxes"][:, 2] - crops["boxes"][:, 0]) * (crops["boxes"][:, 3] - crops["boxes"][:, 1])
    default = pipe.heatmap_crops(gfeat, tau=0.75)["boxes"]
    default_areas = (default[:, 2] - default[:, 0]) * (default[:, 3] - default[:, 1])
    assert bool((areas >= default_areas - 1e-6).all())  # smaller tau, larger (or equal) crop
    # The dashboard still shows the crops of the run's own tau (0.75), though tau 0.3 was cached last.
    assert not bool((areas == default_areas).all())  # else this check could not tell the two apart
    rv = RunView(synthetic_run.parent, synthetic_run.name)
    row = {s.key: i for i, s in enumerate(pipe.ds.slices)}
    for k in rv.predictions.key:
        assert rv.heatmap_box(k).as_list() == pytest.approx(default[row[k]].tolist())


def test_trained_run_answers_a_new_slice_and_a_tau_change(synthetic_run, phantom_root):
    tr = TrainedRun.load(synthetic_run)
    f = next((phantom_root / "covid-ct" / "CT_COVID").glob("*.png"))
    a = tr.analyse(read_slice(f))
    assert set(a.probs) == SCORED and all(0 <= p <= 1 for p in a.probs.values())
    low = tr.rescore_tau(a, 0.1)
    high = tr.rescore_tau(a, 0.9)
    assert low.box.area >= high.box.area
    cam = tr.fusion_cam(low)
    assert cam.shape == (112, 112) and np.isfinite(cam).all()


def test_predict_cli_answers_good_files_and_names_bad_ones(synthetic_run, phantom_root, tmp_path, train_cli):
    good = str(next((phantom_root / "covid-ct" / "CT_NonCOVID").glob("*.png")))
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    p = train_cli("predict", "--run", synthetic_run, bad, good)
    assert p.returncode == 1, p.stderr
    lines = [json.loads(line) for line in p.stdout.splitlines()]
    assert lines[0]["file"] == str(bad) and "broken.png" in lines[0]["error"]
    assert set(lines[1]["probabilities"]) == SCORED
    assert len(lines[1]["heatmap_box"]) == 4 and "lesion_boxes" in lines[1]


# GHIF trains the whole network jointly; GHI-F (the joint branches, then fusion apart) is another whole training
@pytest.mark.parametrize("strategy", [pytest.param("GHI-F", marks=pytest.mark.slow), "GHIF"])
def test_joint_strategies_train_every_branch_and_load_for_prediction(strategy, phantom_root, synthetic_run, tmp_path):
    run = RunFolder(tmp_path / strategy, create=True)
    cfg = replace(PipelineConfig.of_run(RunFolder(synthetic_run)), strategy=strategy, epochs=1,
                  segmenter=str(synthetic_run / "infnet" / "best.pt"), precompute=False)
    Pipeline(run, phantom_root, cfg, progress=False).run_all()
    assert (run.path / "joint" / "summary.json").exists()
    report = evaluate_run(run, "test", n_boot=10)
    assert set(report) == SCORED
    tr = TrainedRun.load(run.path)
    f = next((phantom_root / "covid-ct" / "CT_COVID").glob("*.png"))
    assert set(tr.analyse(read_slice(f)).probs) == SCORED


def test_vector_head_standardisation_is_bounded_for_constant_training_features():
    import torch

    from core.models.branches import CLIP, VectorHead

    train = {"g": torch.cat([torch.zeros(20, 3), torch.randn(20, 5)], 1)}  # 3 dead features
    head = VectorHead({"g": 8}).fit_standardisation(train)
    outlier = {"g": torch.full((1, 8), 50.0)}
    z = head.standardised(outlier)
    assert float(z.abs().max()) <= CLIP
    assert float(head.std.min()) >= 1e-3


# Live analysis segments one slice, the pipeline batches of 16: CPU convolution kernels pick their algorithm
# (and so their order of summation) by batch size and machine, so the fp32 probabilities agree only to ~1e-6,
# and where p * 255 sits that close to a half grey level the stored 8-bit map rounds the other way. What the
# kernels guarantee is thus one grey level on a rare pixel; a wrong setting (precision, mirrored pass) moves
# many pixels by more (checked below, so the tolerance stays able to catch one).
MAX_GREY_STEP = 1  # grey levels
MAX_MOVED_SHARE = 0.005  # of the map's pixels


def lesion_map_gap(live_prob: np.ndarray, stored_u8) -> tuple[int, float]:
    """(largest grey-level difference, share of pixels that differ) of a live probability map against a stored map."""
    import torch

    from core.inputs.lesion_maps import lesion_map_u8

    diff = (lesion_map_u8(torch.from_numpy(live_prob)[None])[0].int() - stored_u8.int()).abs()
    return int(diff.max()), float((diff > 0).float().mean())


def test_live_analysis_segments_a_slice_as_the_pipeline_did(synthetic_run, phantom_root):
    """The run's segmenter settings (precision, mirrored pass) reach live analysis: a slice analysed live
    gets the lesion map the pipeline stored for it, to the kernels' rounding (MAX_GREY_STEP, MAX_MOVED_SHARE)."""
    run = RunFolder(synthetic_run)
    pipe = Pipeline(run, phantom_root, PipelineConfig.of_run(run), progress=False)
    stored = pipe.lesion_inputs()["prob"]
    tr = TrainedRun.load(synthetic_run)
    assert tr.cfg.seg.precision == run.config["pipeline"]["seg"]["precision"]
    i = int(stored.flatten(1).amax(1).argmax())  # a slice where the segmenter sees something
    assert int(stored[i].max()) > 0
    image = read_slice(pipe.ds.slices[i].path)
    step, moved = lesion_map_gap(tr.analyse(image).lesion_prob, stored[i])
    assert step <= MAX_GREY_STEP and moved <= MAX_MOVED_SHARE, (step, moved)
    tr.cfg = replace(tr.cfg, seg=replace(tr.cfg.seg, tta=not tr.cfg.seg.tta))  # the other mirrored-pass setting
    step, moved = lesion_map_gap(tr.analyse(image).lesion_prob, stored[i])
    assert step > MAX_GREY_STEP and moved > MAX_MOVED_SHARE, (step, moved)
