"""One CAM contract (core.explain.cams.base): every method gives a map at the input's size, min-max scaled the
same way, so tau means the same thing whichever method drew it; the pipeline's non-Eq. 1 path caches
each method's native map and crops from it exactly as the live analysis does."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from core.explain.attention import eq1_map, upsample_maps
from core.explain.cams import CAM_METHODS, make_cam
from core.explain.cams.base import normalise
from core.models.backbones import build_backbone
from core.models.classifier import SliceClassifier

METHODS = sorted(CAM_METHODS)
# ScoreCAM runs one forward pass per channel of the last layer (1280) per image: minutes on a CPU. It is the
# library's class behind the same wrapper as Grad-CAM, so `make test` checks the wrapper through the others.
SLOW_METHODS = ("scorecam",)


def each_method(methods):
    return [pytest.param(m, marks=pytest.mark.slow) if m in SLOW_METHODS else m for m in methods]


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    return SliceClassifier(build_backbone("efficientnet_lite0", "scratch")).eval()


def test_every_method_is_listed():
    assert set(METHODS) == {"eq1", "cam", "gradcam", "gradcam++", "eigencam", "scorecam"}


@pytest.mark.parametrize("name", each_method(METHODS))
def test_every_method_keeps_the_contract(name, classifier):
    torch.manual_seed(1)
    x = torch.rand(2, 1, 64, 64)
    with make_cam(name, classifier) as cam:
        native = cam.native(x)
        full = cam(x)
    assert full.shape == (2, 64, 64) and native.dim() == 3 and native.shape[0] == 2
    for m in (native, full):
        assert torch.isfinite(m).all() and float(m.min()) >= 0 and float(m.max()) <= 1 + 1e-6
    for i in range(2):  # scaled per map: each spans [0, 1] unless the method saw nothing there
        lo, hi = float(native[i].min()), float(native[i].max())
        assert lo == pytest.approx(0, abs=1e-6) and hi in (pytest.approx(1, abs=1e-5), pytest.approx(0, abs=1e-6))
    assert torch.allclose(full, upsample_maps(native, 64))  # the stored map, upsampled, is the live one
    assert torch.allclose(normalise(native), native, atol=1e-6)  # scaling twice changes nothing


def test_eq1_method_is_the_papers_map(classifier):
    x = torch.rand(3, 1, 64, 64)
    with make_cam("eq1", classifier) as cam:
        assert torch.allclose(cam.native(x), eq1_map(classifier.backbone.features(x)))


def test_released_hooks_are_refused(classifier):
    with make_cam("gradcam", classifier) as cam:
        pass
    with pytest.raises(RuntimeError, match="released"):
        cam(torch.rand(1, 1, 64, 64))


@pytest.mark.parametrize("name", each_method(m for m in METHODS if m != "eq1"))
def test_pipeline_non_eq1_path_caches_native_maps_that_crop_as_live_analysis_does(name, synthetic_run, phantom_root):
    """A pipeline with another CAM on the trained run's global branch: its cached maps are each method's
    native maps, the tau crops come from them, and the live analysis of a slice draws the same map."""
    from core.config import PipelineConfig
    from core.inference import TrainedRun
    from core.pipeline import Pipeline
    from core.runs.runfolder import RunFolder

    run = RunFolder(synthetic_run)
    cfg = replace(PipelineConfig.of_run(run), cam=name)
    pipe = Pipeline(run, phantom_root, cfg, progress=False)
    pipe.ds.slices, pipe.ds.images = pipe.ds.slices[:4], pipe.ds.images[:4]  # four slices: ScoreCAM is slow
    g = pipe.global_model()
    feats = pipe.global_features(g)
    crops = pipe.heatmap_crops(feats)
    maps = feats["maps"]
    assert maps.shape[0] == 4 and float(maps.min()) >= 0 and float(maps.max()) <= 1 + 1e-6
    assert crops["crops"].shape[:2] == (4, 1) and crops["boxes"].shape == (4, 4)
    tr = TrainedRun.load(synthetic_run)
    tr.cfg = replace(tr.cfg, cam=name)
    live = tr.analyse(pipe.ds.images[0, 0].numpy() / 255.0)  # the stored 8-bit frame: the same input
    stored = upsample_maps(maps[:1], cfg.image_size)[0]
    assert torch.allclose(torch.from_numpy(live.attention).float(), stored, atol=2e-3)
    assert run.config["pipeline"]["cam"] == "eq1"  # probing another method never rewrites the run
