"""Inf-Net segmenter and Algorithm 1 on tiny synthetic phantoms (64 px): fast, CPU only."""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import fields

import numpy as np
import pytest
import torch

from core.config import SegConfig
from core.data.phantom import write_dataset
from core.data.semiseg import unlabelled_pool
from core.models.infnet import InfNet
from core.models.segmenter import load_segmenter, segment
from core.runs.checkpoint import load_checkpoint
from core.training.segmentation import (
    augment_pair,
    mask_edges,
    seg_metrics,
    segmentation_loss,
    semi_supervised,
    train_segmenter,
)

SIZE = 64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One CPU thread: on a 2-core machine shared with another training job, two OpenMP threads
    spin against it and make these tiny batches several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def seg_root(tmp_path_factory):
    # pool: 14 SemiSeg unlabelled + 10 COVID-CT slices (2 classes x (3 + 1 + 1)) = 24
    return write_dataset(tmp_path_factory.mktemp("phantoms"), n_per_class_split={"train": 3, "val": 1, "test": 1},
                         n_seg_train=8, n_seg_test=4, n_unlabelled=14, size=SIZE, seed=3)


def _phantom_batch(n=8, size=SIZE):
    from core.data.phantom import make_phantom

    ps = [make_phantom(100 + i, True, size) for i in range(n)]
    x = torch.from_numpy(np.stack([p.image for p in ps]))[:, None].float()
    y = torch.from_numpy(np.stack([(p.lesion > 0) for p in ps]))[:, None].to(torch.uint8)
    return x, y


def test_forward_shapes():
    torch.manual_seed(0)
    model = InfNet(init="scratch").eval()
    out = model(torch.rand(2, 1, SIZE, SIZE))
    assert len(out["mask"]) == 5
    assert all(m.shape == (2, 1, SIZE, SIZE) for m in out["mask"])
    assert out["edge"].shape == (2, 1, SIZE, SIZE)
    assert model.encoder.channels == [24, 40, 112, 320]


def test_resnet_encoder_taps():
    model = InfNet(encoder="resnet18", init="scratch").eval()
    assert model.encoder.channels == [64, 128, 256, 512]
    assert model(torch.rand(1, 1, SIZE, SIZE))["mask"][-1].shape == (1, 1, SIZE, SIZE)


def test_loss_decreases_and_checkpoint_reloads(tmp_path):
    x, y = _phantom_batch()
    model = train_segmenter(x, y, tmp_path / "seg", epochs=12, seed=0, init="scratch", batch_size=8, lr=2e-3,
                            augment=False, progress=False)
    hist = json.loads((tmp_path / "seg" / "summary.json").read_text())["history"]
    assert hist[-1]["loss"] < 0.8 * hist[0]["loss"]
    again = load_segmenter(tmp_path / "seg" / "model.pt")
    p1, p2 = segment(model, x), segment(again, x)
    assert p1.shape == (8, 1, SIZE, SIZE) and 0 <= float(p1.min()) and float(p1.max()) <= 1
    assert torch.equal(p1, p2)


def test_segmenter_asked_for_emulated_bf16_trains_in_fp32_and_says_so(tmp_path, monkeypatch):
    from core.training import runtime

    monkeypatch.setattr(runtime, "native_bf16", lambda device: False)
    x, y = _phantom_batch()
    logs = []
    train_segmenter(x, y, tmp_path / "seg", epochs=1, seed=0, init="scratch", batch_size=8, precision="bf16",
                    augment=False, progress=False, log=logs.append)
    assert json.loads((tmp_path / "seg" / "summary.json").read_text())["precision"] == "fp32"
    assert logs == ["segmenter: bf16 is emulated on this cpu (slower than fp32): computing in fp32"]


def test_loss_is_finite_and_edges_are_a_ring():
    m = torch.zeros(1, 1, 16, 16)
    m[..., 4:12, 4:12] = 1
    e = mask_edges(m)
    assert e[0, 0, 8, 8] == 0 and e[0, 0, 0, 0] == 0 and e[0, 0, 4, 8] == 1 and e[0, 0, 3, 8] == 1
    out = {"mask": [torch.zeros(1, 1, 16, 16)] * 2, "edge": torch.zeros(1, 1, 16, 16)}
    assert math.isfinite(float(segmentation_loss(out, m)))


def test_unsure_pixels_carry_no_loss():
    """Pixels outside `valid` must not change the loss, whatever their label; inside they must."""
    torch.manual_seed(0)
    out = {"mask": [torch.randn(1, 1, 16, 16)] * 2, "edge": torch.randn(1, 1, 16, 16)}
    m = torch.zeros(1, 1, 16, 16)
    m[..., 4:12, 4:12] = 1
    valid = torch.ones_like(m)
    valid[..., :, 10:] = 0  # right third unsure
    flipped = m.clone()
    flipped[..., :, 13:] = 1 - flipped[..., :, 13:]  # relabel far inside the unsure part (edges stay away)
    base = float(segmentation_loss(out, m, valid))
    assert float(segmentation_loss(out, flipped, valid)) == pytest.approx(base, rel=1e-6)
    assert float(segmentation_loss(out, flipped)) != pytest.approx(float(segmentation_loss(out, m)), rel=1e-3)


def test_sample_weights_and_fixed_steps(tmp_path):
    """Weighted draws never pick a zero-weight slice (NaN images here: one draw would turn every
    weight NaN); `steps` fixes the optimiser step count."""
    x, y = _phantom_batch(8)
    x = x / 255
    w = torch.tensor([1.0] * 8 + [0.0] * 8)
    model = train_segmenter(torch.cat([x, torch.full_like(x, float("nan"))]), torch.cat([y, y]), tmp_path / "w",
                            epochs=1, seed=0, init="scratch", batch_size=4, lr=2e-3, augment=False, progress=False,
                            sample_weights=w, steps=7)
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    summary = json.loads((tmp_path / "w" / "summary.json").read_text())
    assert summary["steps"] == 7
    with pytest.raises(ValueError, match="sample_weights"):
        train_segmenter(x, y, tmp_path / "bad", epochs=1, init="scratch", progress=False,
                        sample_weights=torch.zeros(8))
    with pytest.raises(ValueError, match="valid"):
        train_segmenter(x, y, tmp_path / "bad", epochs=1, init="scratch", progress=False,
                        valid=torch.ones(8, 1, 4, 4))


def test_pseudo_labels_store_the_unsure_band(seg_root, tmp_path):
    out = tmp_path / "band"
    m = semi_supervised(seg_root, out, per_round=10, max_rounds=1, epochs=1, steps_per_round=3, seed=0, size=SIZE,
                        init="scratch", batch_size=4, progress=False, ignore_band=(0.2, 0.8), labelled_share=0.5,
                        polish_epochs=0)
    saved = load_checkpoint(out / "pseudo" / "round-001.pt")
    assert saved["sure"].shape == saved["masks"].shape
    row = m["history"][1]
    assert 0 <= row["pseudo_unsure_fraction"] <= 1
    assert json.loads((out / "train" / "round-001" / "summary.json").read_text())["steps"] == 3
    assert m["config"]["ignore_band"] == [0.2, 0.8] and m["final_tta"]["n"] == 4
    for bad in ({"ignore_band": (0.6, 0.9)}, {"labelled_share": 1.0}):
        with pytest.raises(ValueError):
            semi_supervised(seg_root, tmp_path / "bad", epochs=1, max_rounds=0, size=SIZE, init="scratch",
                            progress=False, **bad)


def test_augment_pair_keeps_masks_binary():
    x, y = _phantom_batch(4)
    xa, ya = augment_pair(x, y.float(), torch.Generator().manual_seed(0))
    assert xa.shape == x.shape and set(ya.unique().tolist()) <= {0.0, 1.0}
    assert float(xa.min()) >= 0 and float(xa.max()) <= 1


def test_seg_metrics_hand_made():
    gt = np.zeros((2, 1, 4, 4), np.float32)
    gt[0, 0, 0, :2] = 1
    gt[1, 0, 3, 3] = 1
    same = seg_metrics(gt, gt)
    assert same["dice"] == 1 and same["iou"] == 1 and same["sensitivity"] == 1 and same["specificity"] == 1
    disjoint = seg_metrics(1 - gt, gt)
    assert disjoint["dice"] == 0 and disjoint["iou"] == 0 and disjoint["sensitivity"] == 0 and disjoint["specificity"] == 0
    # one slice: gt 2 pixels, prediction 2 pixels, 1 shared, on a 4x4 image
    pred = np.zeros((1, 4, 4), np.float32)
    pred[0, 0, 1:3] = 0.9
    m = seg_metrics(pred, gt[:1, 0])
    assert m["dice"] == pytest.approx(0.5) and m["iou"] == pytest.approx(1 / 3)
    assert m["sensitivity"] == pytest.approx(0.5) and m["specificity"] == pytest.approx(13 / 14)
    # an empty slice predicted empty: Dice 1, its undefined sensitivity left out of the mean
    empty = seg_metrics([np.zeros((3, 3)), gt[0, 0]], [np.zeros((3, 3)), gt[0, 0]])
    assert empty["dice"] == 1 and empty["sensitivity"] == 1 and empty["n"] == 2
    assert seg_metrics(np.full((1, 4, 4), 0.4), gt[:1, 0], threshold=0.3)["sensitivity"] == 1


def test_algorithm1_adds_per_round_and_stops_when_pool_empty(seg_root, tmp_path):
    pool = unlabelled_pool(seg_root)
    assert len(pool) == 24
    out = tmp_path / "alg1"
    kw = dict(per_round=10, epochs=1, epochs_per_round=1, steps_per_round=None, polish_epochs=0, seed=0, size=SIZE,
              init="scratch", batch_size=4, progress=False)
    m1 = semi_supervised(seg_root, out, max_rounds=1, **kw)
    assert m1["rounds"] == 1 and [h["n_pseudo"] for h in m1["history"]] == [0, 10]
    # resume: continue to the end of the pool (24 = 10 + 10 + 4 slices), then stop
    m = semi_supervised(seg_root, out, max_rounds=None, **kw)
    assert m["rounds"] == 3
    assert [h["n_pseudo"] for h in m["history"]] == [0, 10, 20, 24]
    assert [h["n_train"] for h in m["history"]] == [8, 18, 28, 32]
    keys = [k for r in (1, 2, 3) for k in load_checkpoint(out / "pseudo" / f"round-{r:03d}.pt")["keys"]]
    assert sorted(keys) == sorted(k for k, _ in pool)  # every pool slice used exactly once
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["rounds"] == 3 and saved["pool_used"] == 24
    for part in ("labelled_only", "after_rounds"):
        assert saved[part]["n"] == 4 and 0 <= saved[part]["dice"] <= 1
    best = load_checkpoint(out / "best.pt")
    assert set(best) >= {"model", "config"} and best["config"]["size"] == SIZE
    model = load_segmenter(out / "best.pt")
    x = torch.rand(2, 1, SIZE, SIZE)
    assert torch.equal(segment(model, x), segment(load_segmenter(out / "best.pt"), x))


def test_cli_on_phantoms(seg_root, tmp_path, capsys):
    from train import infnet

    p = argparse.ArgumentParser()
    infnet.add_args(p)
    args = p.parse_args(["--data-root", str(seg_root), "--out", str(tmp_path / "cli"), "--size", str(SIZE),
                         "--epochs", "1", "--epochs-per-round", "1", "--per-round", "12", "--max-rounds", "1",
                         "--init", "scratch", "--batch-size", "4", "--no-progress", "--precision", "fp32",
                         "--sources", "semiseg", "--polish-epochs", "1", "--labelled-share", "0.6", "--no-tta"])
    summary = infnet.run(args)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["rounds"] == 1 and printed["n_train_final"] == 8 + 12
    assert set(printed["after_rounds"]) == {"dice", "iou", "sensitivity", "specificity"}
    assert set(printed["final_after_polish"]) == set(printed["after_rounds"])
    assert json.loads((tmp_path / "cli" / "train" / "polish" / "summary.json").read_text())["n_train"] == 8
    assert summary["rounds"] == 1
    # every flag reached the configuration metrics.json records (SegConfig's fields + the run's facts)
    saved = json.loads((tmp_path / "cli" / "metrics.json").read_text())["config"]
    want = SegConfig(size=SIZE, epochs=1, epochs_per_round=1, per_round=12, max_rounds=1, init="scratch", batch_size=4,
                     precision="fp32", sources=("semiseg",), polish_epochs=1, labelled_share=0.6, tta=False)
    assert SegConfig.from_dict({f.name: saved[f.name] for f in fields(SegConfig)}) == want
    assert saved["seed"] == 0 and saved["n_labelled_train"] == 8 and saved["finetune_lr_used"] == want.lr / 2
