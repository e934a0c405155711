"""Infection segmentation: train the Inf-Net-style segmenter (data, loss, training), Algorithm 1 (pseudo-label
rounds) and its metrics. Its settings are core.config.SegConfig; segmenting with a trained model is
core.models.segmenter.

Loss (Inf-Net): every supervised map gets the structure loss, weighted BCE + weighted IoU with
weights 1 + 5|avgpool(gt) - gt| (hard pixels near lesion borders count more); the edge map gets BCE
against lesion edges, the morphological gradient (3x3 dilation minus erosion) of the mask.

Algorithm 1 (`semi_supervised`, after Inf-Net's Semi-Inf-Net): train on the labelled slices
(round 0); then each round draws `per_round` random slices not yet used from the unlabelled pool
(COVID-SemiSeg's unlabelled slices plus every COVID-CT slice, whose class labels are never read),
labels them with the current model (probability >= threshold, mirrored-slice average), adds them
to the training set (pseudo labels are fixed once made) and trains again, until the pool is empty
or `max_rounds`. Three guards keep wrong pseudo labels from swamping the 50 real ones: pixels the
model was unsure of (probability inside `ignore_band`) carry no loss, every batch draws
`labelled_share` of its slices from the labelled set, and a fixed `steps_per_round` budget (when
given) keeps late rounds as cheap as early ones.
Departure from the paper, for CPU budgets: each round FINE-TUNES the current weights instead of
retraining from scratch.
The 48 labelled test slices are scored after round 0 and after the last round, at their own
resolution (probabilities upsampled to the mask size), so what the rounds add is measured.
The test slices never take part in training or model selection.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.config import SegConfig
from core.data.image_cache import load_stack
from core.data.imaging import check_mask_shape, read_mask
from core.data.semiseg import read_labelled, unlabelled_pool
from core.models.infnet import InfNet
from core.models.segmenter import as_float01, load_segmenter, segment
from core.runs.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from core.training.plan import segmenter_images, segmenter_parts, segmenter_rounds
from core.training.runtime import autocast, run_precision

# ----------------------------------------------------------------------------------- data
LATEST = Path("rounds") / "latest.pt"  # the model after the last finished round: resuming, and the Data page
STATE = "state.json"  # the rounds finished, and what resuming checks


def finished_rounds(out_dir: Path) -> int | None:
    """The rounds `semi_supervised` has finished in `out_dir` (0: round 0, the labelled slices alone), the model
    after them in out_dir / LATEST; None before round 0 has ended."""
    try:
        return int(json.loads((Path(out_dir) / STATE).read_text())["rounds_done"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_masks(paths, size: int, image_paths=None) -> torch.Tensor:
    """(N, 1, size, size) uint8 0/1 binary masks resized (area-weighted, then >= 0.5).
    With `image_paths`, a mask whose shape differs from its image's is an error naming both."""
    out = []
    for i, p in enumerate(paths):
        mask = read_mask(p)
        if image_paths is not None:
            from PIL import Image

            with Image.open(image_paths[i]) as im:  # header only: no decode
                check_mask_shape(mask, (im.size[1], im.size[0]), f"{p} (image {image_paths[i]})")
        m = torch.from_numpy((mask > 0).astype(np.float32))[None, None]
        m = F.interpolate(m, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append((m[0] >= 0.5).to(torch.uint8))
    return torch.stack(out) if out else torch.zeros(0, 1, size, size, dtype=torch.uint8)


def augment_pair(img: torch.Tensor, mask: torch.Tensor, gen: torch.Generator):
    """Same random affine (rotation +-15 deg, scale 0.85-1.15, shift +-8%, left-right flip) on image
    and mask; contrast/brightness jitter on the image only. img: (B, 1, H, W), mask: (B, C, H, W)
    float 0/1 (C > 1: extra binary maps, e.g. a validity mask, moved with it)."""
    b = img.shape[0]
    r = lambda lo, hi: torch.rand(b, generator=gen) * (hi - lo) + lo
    angle = r(-15, 15) * math.pi / 180
    scale = r(0.85, 1.15)
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    tx, ty = r(-0.08, 0.08), r(-0.08, 0.08)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, [b, 1, *img.shape[-2:]], align_corners=False).to(img.device)
    img = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    mask = (F.grid_sample(mask, grid, mode="bilinear", padding_mode="zeros", align_corners=False) >= 0.5).float()
    contrast = r(0.8, 1.2).view(b, 1, 1, 1).to(img.device)
    bright = r(-0.08, 0.08).view(b, 1, 1, 1).to(img.device)
    return ((img - 0.5) * contrast + 0.5 + bright).clamp(0, 1), mask


# ----------------------------------------------------------------------------------- loss

def mask_edges(mask: torch.Tensor) -> torch.Tensor:
    """Morphological gradient (3x3 dilation minus erosion) of a (B, 1, H, W) 0/1 mask."""
    dil = F.max_pool2d(mask, 3, stride=1, padding=1)
    ero = -F.max_pool2d(-mask, 3, stride=1, padding=1)
    return dil - ero


def border_weights(mask: torch.Tensor) -> torch.Tensor:
    """Inf-Net's pixel weights 1 + 5|avgpool(gt) - gt| (kernel 31 at 352 px, scaled with the size).
    The k x k mean is computed as two 1-D passes (identical result with zero padding, far cheaper)."""
    k = max(3, int(round(31 * mask.shape[-1] / 352)) | 1)
    local = F.avg_pool2d(F.avg_pool2d(mask, (1, k), stride=1, padding=(0, k // 2)), (k, 1), stride=1,
                         padding=(k // 2, 0))
    return 1 + 5 * torch.abs(local - mask)


def structure_loss(logits: torch.Tensor, mask: torch.Tensor, weit: torch.Tensor | None = None) -> torch.Tensor:
    """Inf-Net's weighted BCE + weighted IoU, mean over the batch. Pixels of weight 0 carry no loss."""
    weit = border_weights(mask) if weit is None else weit
    wbce = F.binary_cross_entropy_with_logits(logits, mask, reduction="none")
    wbce = (weit * wbce).sum(dim=(2, 3)) / weit.sum(dim=(2, 3)).clamp_min(1e-6)
    pred = torch.sigmoid(logits)
    inter = (pred * mask * weit).sum(dim=(2, 3))
    union = ((pred + mask) * weit).sum(dim=(2, 3))
    wiou = 1 - (inter + 1) / (union - inter + 1)
    return (wbce + wiou).mean()


def segmentation_loss(out: dict, mask: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Structure loss on every map of out["mask"] + BCE of out["edge"] against the mask's edges.
    `valid` (same shape as mask, 0/1): pixels where it is 0 (unsure pseudo labels) carry no loss."""
    weit = border_weights(mask)
    if valid is not None:
        weit = weit * valid
    loss = sum(structure_loss(m.float(), mask, weit) for m in out["mask"])
    edge = F.binary_cross_entropy_with_logits(out["edge"].float(), mask_edges(mask), weight=valid)
    return loss + edge


# ----------------------------------------------------------------------------------- train / infer

def _lr(base: float, step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


def build_segmenter(encoder="efficientnet_lite0", init="imagenet", seed=0, **model_kw) -> InfNet:
    torch.manual_seed(seed)
    return InfNet(encoder=encoder, init=init, **model_kw)


def train_segmenter(images: torch.Tensor, masks: torch.Tensor, out_dir, epochs: int, seed: int = 0, device="cpu",
                    init_state: dict | None = None, progress: bool = True, *, model: InfNet | None = None,
                    encoder: str = "efficientnet_lite0", init: str = "imagenet", batch_size: int = 8,
                    lr: float = 4e-4, weight_decay: float = 1e-4, warmup_frac: float = 0.05,
                    precision: str = "fp32", augment: bool = True, valid: torch.Tensor | None = None,
                    sample_weights: torch.Tensor | None = None, steps: int | None = None, log=print,
                    on_epoch=None) -> InfNet:
    """Train (or fine-tune) a segmenter on images (N,1,S,S) uint8 or [0,1] float and masks (N,1,S,S) 0/1.

    Starts from `model` if given, else builds one (`encoder`, `init`) and loads `init_state` (a state
    dict) over it when given. AdamW, linear warm-up then cosine decay, per-step joint augmentation.
    `valid` (N,1,S,S) 0/1: pixels that carry loss (default all). `sample_weights` (N,): batches are
    drawn with replacement in proportion to them (default: each epoch a permutation). `steps`: total
    optimiser steps instead of `epochs` full passes (the "epochs" of the log are then N/batch steps).
    `on_epoch`: called with each epoch's history row (the run's progress log).
    Writes out_dir/model.pt ({"model", "config"}) and out_dir/summary.json; returns the model (eval).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    if len(images) != len(masks) or len(images) == 0:
        raise ValueError(f"need as many masks as images, at least one (got {len(images)} and {len(masks)})")
    if valid is not None and valid.shape != masks.shape:
        raise ValueError(f"valid {tuple(valid.shape)} must have the masks' shape {tuple(masks.shape)}")
    if sample_weights is not None and (len(sample_weights) != len(images) or not bool((sample_weights >= 0).all())
                                       or float(sample_weights.sum()) <= 0):
        raise ValueError("sample_weights: one non-negative weight per image, not all zero")
    if model is None:
        model = build_segmenter(encoder, "scratch" if init_state is not None else init, seed)
        if init_state is not None:
            model.load_state_dict(init_state)
    model.to(device).to(memory_format=torch.channels_last)
    precision = run_precision(precision, device, log, "segmenter")
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    n = len(images)
    bs = min(batch_size, n)
    steps_per_epoch = max(1, n // bs)  # drop the ragged tail: BatchNorm dislikes tiny batches
    if steps is not None:
        epochs = max(1, math.ceil(steps / steps_per_epoch))
    total = steps_per_epoch * epochs if steps is None else steps
    warmup = max(1, int(warmup_frac * total))
    history = []
    step = 0
    t_start = time.time()
    for epoch in range(epochs):
        torch.manual_seed(seed * 10007 + epoch)
        gen = torch.Generator().manual_seed(seed * 7919 + epoch)
        perm = torch.randperm(n, generator=gen)
        model.train()
        t0, loss_sum, seen = time.time(), 0.0, 0
        for s in range(min(steps_per_epoch, total - step)):
            if sample_weights is None:
                idx = perm[s * bs:(s + 1) * bs]
            else:
                idx = torch.multinomial(sample_weights.float(), bs, replacement=True, generator=gen)
            x, y = as_float01(images[idx]), masks[idx].float()
            v = None if valid is None else valid[idx].float()
            if augment:
                x, yv = augment_pair(x, y if v is None else torch.cat([y, v], 1), gen)
                y, v = (yv, None) if v is None else (yv[:, :1], yv[:, 1:])
            x = x.to(device).contiguous(memory_format=torch.channels_last)
            y = y.to(device)
            v = None if v is None else v.to(device)
            for g in opt.param_groups:
                g["lr"] = _lr(lr, step, total, warmup)
            with autocast(precision, device):
                out = model(x)
            loss = segmentation_loss(out, y, v)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += float(loss.detach()) * len(idx)
            seen += len(idx)
        row = {"epoch": epoch + 1, "loss": loss_sum / seen, "seconds": round(time.time() - t0, 2),
               "img_per_s": round(seen / (time.time() - t0), 2), "images": seen}
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
        if progress:
            log(json.dumps(row))
    model.eval()
    summary = {"epochs": epochs, "steps": step, "n_train": n, "batch_size": bs, "lr": lr, "precision": precision, "seed": seed,
               "seconds": round(time.time() - t_start, 1), "history": history}
    save_checkpoint({"model": model.state_dict(), "config": dict(model.config)}, out_dir / "model.pt")
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=1))
    return model


def seg_metrics(prob, gt, threshold: float = 0.5) -> dict:
    """Dice, IoU, sensitivity, specificity of (prob >= threshold) against gt > 0.5, mean over slices.

    prob, gt: tensors/arrays of shape (N, [1,] H, W), or equal-length lists of per-slice (H, W)
    arrays (slices may differ in size). Per-slice conventions: Dice and IoU are 1 when prediction
    and truth are both empty; sensitivity (specificity) is undefined on a slice with no lesion
    (no background) pixels and left out of its mean. Also returns the pooled (all-pixel) Dice.
    """
    if len(prob) != len(gt):
        raise ValueError(f"{len(prob)} predictions for {len(gt)} masks")
    rows = []
    tp_all = fp_all = fn_all = 0.0
    for p, g in zip(prob, gt):
        p = torch.as_tensor(np.asarray(p, dtype=np.float32)).squeeze() >= threshold
        g = torch.as_tensor(np.asarray(g, dtype=np.float32)).squeeze() > 0.5
        if p.shape != g.shape:
            raise ValueError(f"prediction {tuple(p.shape)} and mask {tuple(g.shape)} differ in shape")
        tp = float((p & g).sum()); fp = float((p & ~g).sum())
        fn = float((~p & g).sum()); tn = float((~p & ~g).sum())
        tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
        rows.append((1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn),
                     1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn),
                     tp / (tp + fn) if tp + fn > 0 else math.nan,
                     tn / (tn + fp) if tn + fp > 0 else math.nan))
    a = np.array(rows, dtype=np.float64).reshape(-1, 4)
    mean = lambda c: float(np.nanmean(a[:, c])) if len(a) and not np.isnan(a[:, c]).all() else math.nan
    pooled = 2 * tp_all / (2 * tp_all + fp_all + fn_all) if tp_all + fp_all + fn_all > 0 else 1.0
    return {"dice": mean(0), "iou": mean(1), "sensitivity": mean(2), "specificity": mean(3),
            "dice_pooled": pooled, "n": len(rows)}


def evaluate_native(model: InfNet, images: torch.Tensor, mask_paths, threshold: float = 0.5,
                    precision: str = "fp32", tta: bool = False) -> dict:
    """Metrics at each mask's own resolution: probabilities at S x S are upsampled to the mask size."""
    prob = segment(model, images, precision=precision, tta=tta)
    probs, gts = [], []
    for p, path in zip(prob, mask_paths):
        g = read_mask(path) > 0
        probs.append(F.interpolate(p[None], size=g.shape, mode="bilinear", align_corners=False)[0, 0].numpy())
        gts.append(g)
    return seg_metrics(probs, gts, threshold)


# ----------------------------------------------------------------------------------- Algorithm 1

def _pack(masks: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.packbits(masks.numpy().astype(bool), axis=-1))


def _unpack(packed: torch.Tensor, size: int) -> torch.Tensor:
    return torch.from_numpy(np.unpackbits(packed.numpy(), axis=-1)[..., :size].astype(np.uint8))


def semi_supervised(data_root, out_dir, cfg: SegConfig | None = None, *, seed: int = 0, device="cpu",
                    resume: bool = True, progress: bool = True, log=print, report=None, **overrides) -> dict:
    """Algorithm 1 (see the module docstring) with the settings `cfg` (default SegConfig()), any of
    them overridden by name (`epochs=1, size=64`; a name that is no SegConfig field is a TypeError).
    Returns the dict written to out_dir/metrics.json, whose "config" is the resolved SegConfig plus
    the run's facts (data root, seed, pool and split sizes, the learning rates used).

    The metrics hold "labelled_only", "after_rounds" (the pure Algorithm 1 result) and "final" (the
    model written to best.pt: after the `polish_epochs` labelled-only epochs, when there are any),
    each also scored with the mirrored-slice average ("..._tta").
    Files: out_dir/best.pt (the final model, never chosen on the test slices),
    out_dir/metrics.json, out_dir/rounds/round-000.pt (labelled only), out_dir/rounds/latest.pt and
    out_dir/pseudo/round-KKK.pt (that round's keys and bit-packed pseudo masks) for resuming:
    a rerun with resume=True continues after the last finished round. `report`: the stage's
    core.runs.progress.StageReport (its parts: round 0, the rounds, the polish).
    """
    if cfg is not None and not isinstance(cfg, SegConfig):
        raise TypeError(f"cfg: expected a SegConfig, got {type(cfg).__name__} (pass settings by name)")
    cfg = (cfg or SegConfig()).override(**overrides)
    size, threshold, precision, per_round = cfg.size, cfg.threshold, cfg.precision, cfg.per_round
    out_dir = Path(out_dir)
    (out_dir / "rounds").mkdir(parents=True, exist_ok=True)
    (out_dir / "pseudo").mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    t_all = time.time()
    train_sl, test_sl = read_labelled(data_root, "train"), read_labelled(data_root, "test")
    x_lab = load_stack([s.image for s in train_sl], size)
    y_lab = load_masks([s.mask for s in train_sl], size, image_paths=[s.image for s in train_sl])
    x_test = load_stack([s.image for s in test_sl], size)
    test_masks = [s.mask for s in test_sl]
    pool = unlabelled_pool(data_root, cfg.sources)
    order = np.random.default_rng(seed).permutation(len(pool)).tolist()
    n_rounds = segmenter_rounds(cfg, len(pool))
    # the resolved configuration as metrics.json holds it (JSON lists), then the run's facts
    config = {**json.loads(json.dumps(asdict(cfg))), "data_root": str(data_root), "seed": seed, "pool_size": len(pool),
              "n_labelled_train": len(train_sl), "n_test": len(test_sl),
              "finetune_lr_used": cfg.finetune_lr_used, "polish_lr_used": cfg.polish_lr_used}
    state_path = out_dir / STATE
    state = None
    if resume and state_path.exists():
        state = json.loads(state_path.read_text())
        if state.get("config", {}).get("seed") != seed or state["config"].get("per_round") != per_round \
                or state["config"].get("size") != size or state["config"].get("encoder") != cfg.encoder:
            raise ValueError(f"{out_dir}: holds a run with another seed/per_round/size/encoder; use another out dir")
    evaluate = lambda m, tta=False: evaluate_native(m, x_test, test_masks, threshold, precision, tta=tta)
    if report is not None:
        report.start(planned_images=segmenter_images(cfg, len(train_sl), len(pool)),
                     parts=segmenter_parts(cfg, len(pool)), resumed_at=(state["rounds_done"] + 1 if state else 0, 1))

    def hook(part: int, name: str, slices: int):  # one part's epochs to the progress log
        return report.part_hook(part, name, slices) if report is not None else None

    if state is None:
        log(f"round 0: training on {len(train_sl)} labelled slices for {cfg.epochs} epochs")
        t0 = time.time()
        model = train_segmenter(x_lab, y_lab, out_dir / "train" / "round-000", cfg.epochs, seed, device,
                                progress=progress, encoder=cfg.encoder, init=cfg.init, batch_size=cfg.batch_size,
                                lr=cfg.lr, precision=precision, log=log, on_epoch=hook(0, "round 0", len(train_sl)))
        train_s = time.time() - t0
        labelled_only = evaluate(model)
        state = {"config": config, "rounds_done": 0, "labelled_only": labelled_only,
                 "labelled_only_tta": evaluate(model, tta=True),
                 "history": [{"round": 0, "n_train": len(train_sl), "n_pseudo": 0, "train_seconds": round(train_s, 1),
                              "test": labelled_only}]}
        ckpt = {"model": model.state_dict(), "config": {**model.config, "size": size, "threshold": threshold}}
        save_checkpoint(ckpt, out_dir / "rounds" / "round-000.pt")
        save_checkpoint(ckpt, out_dir / LATEST)
        atomic_write_text(state_path, json.dumps(state, indent=1))
        log(f"round 0: test {json.dumps(labelled_only)}")
    else:
        model = load_segmenter(out_dir / LATEST, device)
        log(f"resuming after round {state['rounds_done']}")
    x_parts, y_parts, v_parts = [x_lab], [y_lab], [torch.ones_like(y_lab)]
    for k in range(1, state["rounds_done"] + 1):  # pseudo labels of finished rounds, as they were made
        saved = load_checkpoint(out_dir / "pseudo" / f"round-{k:03d}.pt")
        keys = saved["keys"]
        by_key = dict(pool)
        x_parts.append(load_stack([by_key[key] for key in keys], size))
        y_parts.append(_unpack(saved["masks"], size))
        v_parts.append(_unpack(saved["sure"], size) if "sure" in saved else torch.ones_like(y_parts[-1]))
    for k in range(state["rounds_done"] + 1, n_rounds + 1):
        t0 = time.time()
        chosen = [pool[i] for i in order[(k - 1) * per_round:k * per_round]]
        x_new = load_stack([p for _, p in chosen], size)
        prob = segment(model, x_new, device=device, precision=precision, tta=cfg.pseudo_tta)
        y_new = (prob >= threshold).to(torch.uint8)
        sure = torch.ones_like(y_new) if cfg.ignore_band is None else \
            ((prob <= cfg.ignore_band[0]) | (prob >= cfg.ignore_band[1])).to(torch.uint8)
        save_checkpoint({"keys": [key for key, _ in chosen], "masks": _pack(y_new), "sure": _pack(sure)},
                        out_dir / "pseudo" / f"round-{k:03d}.pt")
        x_parts.append(x_new)
        y_parts.append(y_new)
        v_parts.append(sure)
        x_all, y_all, v_all = torch.cat(x_parts), torch.cat(y_parts), torch.cat(v_parts)
        n_pseudo = len(x_all) - len(x_lab)
        weights = None
        if cfg.labelled_share is not None:
            weights = torch.cat([torch.full((len(x_lab),), cfg.labelled_share / len(x_lab)),
                                 torch.full((n_pseudo,), (1 - cfg.labelled_share) / n_pseudo)])
        log(f"round {k}/{n_rounds}: +{len(chosen)} pseudo-labelled slices "
            f"({float(y_new.float().mean()) * 100:.2f}% lesion pixels, {float(1 - sure.float().mean()) * 100:.2f}% "
            f"unsure), training set {len(x_all)}")
        model = train_segmenter(x_all, y_all, out_dir / "train" / f"round-{k:03d}", cfg.epochs_per_round,
                                seed + k, device, model=model, batch_size=cfg.batch_size, lr=cfg.finetune_lr_used,
                                warmup_frac=0.1, precision=precision, progress=progress, valid=v_all,
                                sample_weights=weights, steps=cfg.steps_per_round, log=log,
                                on_epoch=hook(k, f"round {k}", len(x_all)))
        row = {"round": k, "n_train": len(x_all), "n_pseudo": n_pseudo,
               "pseudo_lesion_fraction": float(y_new.float().mean()),
               "pseudo_unsure_fraction": float(1 - sure.float().mean()),
               "pseudo_empty_slices": int((y_new.flatten(1).sum(1) == 0).sum()),
               "train_seconds": round(time.time() - t0, 1)}
        state["history"].append(row)
        state["rounds_done"] = k
        save_checkpoint({"model": model.state_dict(), "config": {**model.config, "size": size, "threshold": threshold}},
                        out_dir / LATEST)
        atomic_write_text(state_path, json.dumps(state, indent=1))
    after = evaluate(model) if state["rounds_done"] > 0 else state["labelled_only"]
    after_tta = evaluate(model, tta=True) if state["rounds_done"] > 0 else state.get("labelled_only_tta")
    if state["rounds_done"] > 0:
        state["history"][-1]["test"] = after
    final = after
    if cfg.polish_epochs > 0:
        log(f"polish: fine-tuning on the {len(x_lab)} labelled slices for {cfg.polish_epochs} epochs")
        model = train_segmenter(x_lab, y_lab, out_dir / "train" / "polish", cfg.polish_epochs, seed + 100_003, device,
                                model=model, batch_size=cfg.batch_size, warmup_frac=0.1, precision=precision,
                                lr=cfg.polish_lr_used, progress=progress, log=log,
                                on_epoch=hook(n_rounds + 1, "polish", len(x_lab)))
        final = evaluate(model)
    final_tta = evaluate(model, tta=True) if cfg.polish_epochs > 0 or after_tta is None else after_tta
    save_checkpoint({"model": model.state_dict(), "config": {**model.config, "size": size, "threshold": threshold}},
                    out_dir / "best.pt")
    metrics = {"labelled_only": state["labelled_only"], "after_rounds": after, "final": final,
               "labelled_only_tta": state.get("labelled_only_tta"), "after_rounds_tta": after_tta, "final_tta": final_tta,
               "rounds": state["rounds_done"], "polish_epochs": cfg.polish_epochs,
               "pool_size": len(pool), "pool_used": min(len(pool), state["rounds_done"] * per_round),
               "n_train_final": sum(len(x) for x in x_parts), "history": state["history"], "config": config,
               "seconds_this_call": round(time.time() - t_all, 1)}
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=1))
    if report is not None:
        report.end()
    return metrics
