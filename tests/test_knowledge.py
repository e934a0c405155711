"""Knowledge-guided input and training: harmonised lung frames, the attention loss, the lesion-share
baseline and the shortcut audit (fast tests on generated phantoms)."""
import json

import numpy as np
import pytest
import torch

from core.audits.shortcut import blank_lungs, lungs_only
from core.config import PipelineConfig
from core.data.phantom import make_phantom
from core.inputs.augment import augment_batch, augment_with_masks
from core.inputs.boxes import FULL, Box
from core.inputs.harmonise import from_frame, grown, harmonise, square_box, to_frame
from core.inputs.lesion_maps import lesion_share
from core.inputs.lungs import lung_field
from core.training.guidance import attention_loss, cell_masks


@pytest.fixture(scope="module")
def zoomed_out():
    """A whole-body phantom slice and its lesion mask."""
    p = make_phantom(3, covid=True, size=256)
    return p.image, p.lesion > 0


def test_lungs_frame_removes_the_zoom(zoomed_out):
    """The same anatomy at two zooms (whole body; a figure crop cutting through the body) gives
    (nearly) the same harmonised frame: the zoom is no cue any more."""
    whole, _ = zoomed_out
    cut = whole[40:216, 24:232]
    a, b = harmonise(whole, "lungs", 64), harmonise(cut, "lungs", 64)
    assert a.found and b.found
    assert np.abs(a.image - b.image).mean() < 0.05
    # the plain slices differ a lot between the two zooms
    assert np.abs(harmonise(whole, "slice", 64).image - harmonise(cut, "slice", 64).image).mean() > 0.1


def test_lungs_frame_blanks_outside_and_normalises_inside(zoomed_out):
    canvas, _ = zoomed_out
    h = harmonise(canvas, "lungs", 96)
    assert h.image.shape == h.lung.shape == (96, 96)
    from scipy import ndimage

    rim = ndimage.binary_dilation(h.lung, iterations=2)  # resampling blurs the edge by a pixel
    assert h.image[~rim].max() < 0.01 and h.image[h.lung].mean() > 0.1  # outside the lung field: nothing
    inside = h.image[h.lung]
    assert 0.05 < np.percentile(inside, 2) < 0.2 and 0.8 < np.percentile(inside, 98) < 0.95
    # the same slice at half the contrast gives the same frame: intensities are normalised in the lungs
    dim = harmonise(0.25 + canvas * 0.5, "lungs", 96)
    assert np.abs(dim.image - h.image).mean() < 0.03


def test_frame_box_is_square_and_maps_round_trip(zoomed_out):
    canvas, lesion = zoomed_out
    field = lung_field(canvas)
    box = square_box(field, *canvas.shape)
    assert abs((box.y1 - box.y0) - (box.x1 - box.x0)) < 1e-6  # square on a square slice: no stretching
    framed = to_frame(lesion.astype(np.float32), box, 128, order=0)
    back = from_frame(framed, box, *canvas.shape) > 0.5
    inter = (back & lesion).sum() / max(1, (back | lesion).sum())
    assert inter > 0.8
    # a box reaching outside the slice is zero-padded there
    out = to_frame(np.ones((10, 10), np.float32), Box(-0.5, -0.5, 1.0, 1.0), 30, order=0)
    assert out[:10, :10].max() == 0 and out[-5:, -5:].min() == 1


def test_slice_mode_is_the_plain_resize():
    from core.data.image_cache import resize01

    img = make_phantom(1, covid=False, size=96).image
    h = harmonise(img, "slice", 64)
    assert h.box == FULL and np.array_equal(h.image, resize01(img, 64))


def test_an_unknown_input_mode_is_refused_by_the_configuration_and_by_harmonise():
    with pytest.raises(ValueError, match="input mode 'lung'"):
        PipelineConfig(input="lung")
    with pytest.raises(ValueError, match="input mode"):
        harmonise(np.zeros((32, 32), np.float32), "lung", 16)


def test_masks_follow_the_geometric_augmentation_only():
    x = torch.zeros(4, 1, 32, 32)
    x[:, :, 8:16, 4:12] = 1.0
    mask = (x > 0.5).float()
    gen = torch.Generator().manual_seed(0)
    xa, (ma,) = augment_with_masks(x.clone(), gen, "harmonise", (mask.clone(),))
    assert set(ma.unique().tolist()) <= {0.0, 1.0}  # masks stay binary: no intensity changes
    # the bright square moved with its mask
    for i in range(4):
        assert xa[i, 0][ma[i, 0] > 0.5].mean() > xa[i, 0][ma[i, 0] < 0.5].mean() + 0.3
    # the plain entry point gives the same image for the same random stream
    again = augment_batch(x.clone(), torch.Generator().manual_seed(0), "harmonise")
    assert torch.allclose(again, xa)


def test_source_augmentation_changes_fine_texture():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(16, 1, 64, 64, generator=torch.Generator().manual_seed(2))
    strong = augment_batch(x, torch.Generator().manual_seed(1), "strong")
    harm = augment_batch(x, gen, "harmonise")
    hf = lambda t: (t[..., 1:, :] - t[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    # resolution loss and blur take high frequencies away from some slices
    assert (hf(harm) < 0.8 * hf(strong)).sum() >= 4


def test_attention_loss_rewards_evidence_in_lesions_and_punishes_it_outside_the_lungs():
    lung = torch.zeros(2, 1, 64, 64)
    lung[:, :, 8:56, 8:56] = 1
    lesion = torch.zeros(2, 1, 64, 64)
    lesion[:, :, 16:32, 16:32] = 1
    batch = {"lung": lung, "lesion": lesion}
    y = torch.tensor([1.0, 1.0])
    grid = cell_masks(lesion, (8, 8))
    on_lesion = grid * 5.0
    outside = 5.0 * (1 - cell_masks(lung, (8, 8)))
    assert attention_loss(on_lesion, batch, y, 1.0, 1.0) < 1e-5
    assert attention_loss(outside, batch, y, 1.0, 0.0) > 0.99
    # negatives carry no lesion loss; a lesion-free positive neither
    assert attention_loss(outside * 0 + 1.0, batch, torch.tensor([0.0, 0.0]), 0.0, 1.0) == 0
    # gradients flow to the map
    cam = torch.ones(2, 8, 8, requires_grad=True)
    attention_loss(cam, batch, y, 1.0, 1.0).backward()
    assert cam.grad.abs().sum() > 0


def test_guided_training_step_uses_the_masks(phantom_root, tmp_path):
    """A guided recipe trains a SliceClassifier with the CAM penalty (and only then keeps CAMs)."""
    from core.data.slices import StageData
    from core.models.backbones import build_backbone
    from core.models.classifier import SliceClassifier
    from core.training.recipes import get_recipe
    from core.training.trainer import train_stage

    torch.manual_seed(0)
    model = SliceClassifier(build_backbone("resnet18", "scratch"))
    n = 8
    imgs = (torch.rand(n, 1, 64, 64) * 255).to(torch.uint8)
    lung = torch.zeros(n, 1, 64, 64, dtype=torch.uint8)
    lung[:, :, 8:56, 8:56] = 255
    data = StageData({"image": imgs, "lung": lung, "lesion": lung.clone()}, torch.tensor([0.0, 1.0] * 4))
    recipe = get_recipe("guided", epochs=1, batch_size=4)
    summary = train_stage(model, data, data, recipe, tmp_path / "g", progress=False, log=lambda m: None)
    assert summary["epochs_run"] == 1 and not model.keep_cam and model.last_cam is None


def test_lesion_share_is_the_lesion_part_of_the_lung_field():
    prob = torch.zeros(2, 10, 10, dtype=torch.uint8)
    prob[0, :5, :] = 255  # half the slice
    lungs = torch.zeros(2, 1, 20, 20, dtype=torch.uint8)
    lungs[:, :, :, :10] = 255  # the left half
    share = lesion_share(prob, lungs)
    assert share[0] == pytest.approx(0.5) and share[1] == 0


def test_shortcut_edits_touch_only_their_part(zoomed_out):
    canvas, _ = zoomed_out
    field = lung_field(canvas)
    lung = grown(field)
    blanked, only = blank_lungs(canvas, field), lungs_only(canvas, field)
    assert np.array_equal(blanked[~lung], canvas[~lung]) and np.allclose(blanked[lung], canvas.mean())
    assert np.array_equal(only[lung], canvas[lung]) and np.allclose(only[~lung], canvas.mean())


def test_guided_run_trains_on_lung_frames_with_the_attention_loss(guided_run):
    from core.runs.runfolder import RunFolder

    run = RunFolder(guided_run)
    log = (guided_run / "log.txt").read_text()
    assert run.config["pipeline"]["input"] == "lungs"
    missing = run.config["lung_field_not_found"]  # reported, in the config and the log, never passed silently
    assert len(missing) < 3 and all(k.startswith("CT_") for k in missing)
    assert (f"no lung field found in {len(missing)} of" in log) == bool(missing)
    # the global and heatmap branches train with the penalties; the infected branch says it cannot
    assert "infected: InfectedClassifier has no single class activation map" in log
    assert "global: InfectedClassifier" not in log and "heatmap: SliceClassifier" not in log
    summary = json.loads((guided_run / "global" / "summary.json").read_text())
    assert summary["recipe"]["guide_outside"] > 0 and summary["recipe"]["augment"] == "harmonise"


# the guided run's audit is also made (in-process) and plotted by tests/test_disease_page.py
@pytest.mark.parametrize("which", ["synthetic_run", pytest.param("guided_run", marks=pytest.mark.slow)])
def test_shortcut_command(which, request, phantom_root, train_cli):
    run_dir = request.getfixturevalue(which)
    out = train_cli("shortcut", "--run", run_dir, "--data-root", phantom_root, "--no-progress")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    synthetic_run = run_dir
    assert res == json.loads((synthetic_run / "shortcut.json").read_text())
    assert set(res["branches"]) >= {"global", "fusion", "lesion-share"}
    for b, r in res["branches"].items():
        assert set(r) >= {"intact", "lungs-blanked", "lungs-only", "external"}
        ext = r["external"]
        assert ext["n"] == 6 and 0 <= ext["sensitivity"] <= 1 and 0 <= ext["mean_p"] <= 1
    assert set(res["localisation"]) == {"global", "fusion", "uniform", "uniform-in-lungs"}
    # live scoring reproduces what the pipeline stored, on every branch (one preprocessing path)
    assert max(res["live_vs_stored_max_abs_diff"].values()) < 1e-3
    assert (synthetic_run / "shortcut.csv").read_text().startswith("branch,")


def test_shortcut_audit_of_the_global_branch_alone_on_the_selection_slices(synthetic_run, phantom_root):
    """Variants are chosen on COVID-SemiSeg's training slices, scored by the global branch alone."""
    from core.audits.shortcut import GlobalScorer, audit
    from core.runs.runfolder import RunFolder

    run = RunFolder(synthetic_run)
    res = audit(run, phantom_root, GlobalScorer(run), limit=4, progress=False, external_split="train")
    assert list(res["branches"]) == ["global"] and res["external_slices"]["split"] == "train"
    assert res["external_slices"]["n"] == 4 and res["n_test"] + len(res["no_lung_field"]) == 2 * 4  # 4 of each class
    assert res["live_vs_stored_max_abs_diff"]["global"] < 1e-3
    assert set(res["localisation"]) == {"global", "uniform", "uniform-in-lungs"}


def test_dashboard_shows_each_run_the_frame_it_saw(guided_run, synthetic_run):
    from core.data.imaging import read_slice
    from core.runs.run_view import RunView

    for run_dir, mode, decision in ((guided_run, "lungs", "two-step"), (synthetic_run, "slice", "fusion")):
        rv = RunView(run_dir.parent, run_dir.name)
        assert rv.input_mode == mode and rv.decision_branch() == decision  # the baseline never decides
        key = rv.predictions.key[0]
        expected = harmonise(read_slice(rv.slice_paths[key]), mode, 64).image
        assert np.abs(rv.image(key, 64) / 255 - expected).max() <= 1 / 255 + 1e-6
