"""One training loop for every branch: early stopping on validation AUC, atomic per-epoch
checkpoints, exact resume, bf16/channels-last fast path, DDP when torch.distributed is up.

Inputs are dicts of tensors with one row per slice (images as uint8, cached vectors as float);
a model takes such a dict batch and returns logits (B,). Keys listed in `image_keys` are turned
to float in [0, 1] and, in training, augmented.

Reproducibility: every epoch reseeds torch and the augmentation generator from (seed, epoch), so a
run resumed from the checkpoint of epoch e continues exactly as the uninterrupted run did.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from core.data.slices import StageData
from core.inputs.augment import augment_with_masks
from core.results.metrics import auc
from core.runs.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint, save_resume_point
from core.runs.checkpoint import resume as resume_from
from core.training.guidance import MASK_KEYS, attention_loss
from core.training.recipes import Recipe
from core.training.runtime import autocast, is_main, run_precision, world


def prepare(batch: dict, image_keys, device, channels_last=False, augment_gen=None, strength="light") -> dict:
    """Move a batch to `device`; image keys become float in [0, 1] (augmented when `augment_gen` is
    given). Mask keys (core.training.guidance.MASK_KEYS) become float too and follow the geometric changes
    of the first image key."""
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    masks = [k for k in MASK_KEYS if k in out]
    for k in masks:
        out[k] = out[k].float() / 255.0 if out[k].dtype == torch.uint8 else out[k].float()
    first = True
    for k in out:
        if k not in image_keys:
            continue
        v = out[k]
        v = v.float() / 255.0 if v.dtype == torch.uint8 else v.float()
        if augment_gen is not None:
            moved = [out[m] for m in masks] if first else []
            v, moved = augment_with_masks(v, augment_gen, strength, tuple(moved))
            for m, mv in zip(masks if first else [], moved):
                out[m] = mv
        first = False
        if channels_last:
            v = v.contiguous(memory_format=torch.channels_last)
        out[k] = v
    return out


@torch.no_grad()
def predict(model: nn.Module, data: StageData, image_keys=("image",), batch_size=64, device="cpu",
            precision="fp32", channels_last=False, reduce=True) -> np.ndarray:
    """Probabilities (N,) in slice order. A model with several heads returns (B, m) logits: `reduce`
    averages their probabilities (validation of joint training), else (N, m) is returned."""
    device = torch.device(device)
    model.eval()
    out = []
    for i in range(0, len(data), batch_size):
        b = prepare(data.batch(slice(i, i + batch_size)), image_keys, device, channels_last)
        with autocast(precision, device):
            p = torch.sigmoid(model(b).float()).cpu()
            out.append(p.mean(1) if (reduce and p.dim() == 2) else p)
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def sizes_record(model: nn.Module) -> dict:
    """{"sizes": vector sizes} for a model built from them (core.models.network; the heads, the infected
    branch), so a checkpoint rebuilds its model without knowing the backbone's width."""
    dims = getattr(model, "dims", None)
    return {"sizes": dict(dims)} if dims else {}


def _optimizer(params, r: Recipe):
    if r.optimizer == "sgd":
        return torch.optim.SGD(params, lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay)
    if r.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=r.lr, weight_decay=r.weight_decay)
    raise ValueError(f"unknown optimizer {r.optimizer!r}")


def lr_at(r: Recipe, epoch: int, step: int, steps_per_epoch: int) -> float:
    if r.schedule == "step":
        return r.lr * (0.1 if epoch >= r.step_epoch else 1.0)
    t = epoch + step / steps_per_epoch
    if t < 1:  # warm-up
        return r.lr * max(t, 0.05)
    return r.lr * 0.5 * (1 + math.cos(math.pi * (t - 1) / max(1, r.epochs - 1)))


def train_stage(model: nn.Module, train: StageData, val: StageData, recipe: Recipe, stage_dir: Path, *,
                seed: int = 0, device="cpu", image_keys=("image",), resume=False, progress=True,
                log=print, trainable=None, max_epochs: int | None = None, report=None) -> dict:
    """Train `model` and keep the epoch with the best validation AUC in stage_dir/best.pt.

    `trainable`: parameters to optimise (default: all that require grad). `report`: the stage's
    core.runs.progress.StageReport (start, every epoch, end go to the run's progress log). Returns the
    summary that is also written to stage_dir/summary.json.
    """
    stage_dir = Path(stage_dir)
    device = torch.device(device)
    rank, world_size = world()
    model.to(device)
    guided = recipe.guided and hasattr(model, "keep_cam")
    if recipe.guided and not guided:  # said, never silently dropped
        log(f"{stage_dir.name}: {type(model).__name__} has no single class activation map; "
            "trained without the attention loss of recipe " + recipe.name)
    if guided:
        model.keep_cam = True  # forward() keeps its CAM for the attention loss (core.training.guidance)
    precision = run_precision(recipe.precision, device, log, stage_dir.name)
    if recipe.channels_last:
        model.to(memory_format=torch.channels_last)
    params = [p for p in (trainable if trainable is not None else model.parameters()) if p.requires_grad]
    opt = _optimizer(params, recipe)
    net = model
    if world_size > 1:
        net = nn.parallel.DistributedDataParallel(model, find_unused_parameters=False)
    epochs = recipe.epochs if max_epochs is None else min(recipe.epochs, max_epochs)
    last = stage_dir / "last.pt"
    state = resume_from(last, model, opt) if resume else None
    if state is not None:
        log(f"resumed {stage_dir.name} after epoch {state['epoch']}")
    else:
        state = {"epoch": 0, "best_auc": -1.0, "best_epoch": -1, "history": []}
    if is_main():
        stage_dir.mkdir(parents=True, exist_ok=True)
    n = len(train)
    per_rank = max(1, recipe.batch_size // world_size)
    steps = max(1, n // recipe.batch_size)  # drop the last ragged batch: BatchNorm dislikes tiny ones
    labels = train.labels.float()
    if report is not None:
        report.start(epochs=epochs, patience=recipe.patience, images_per_epoch=steps * min(per_rank, n) * world_size,
                     resumed_at=(0, state["epoch"] + 1))
    for epoch in range(state["epoch"], epochs):
        if recipe.patience and epoch - state["best_epoch"] > recipe.patience and state["best_epoch"] >= 0:
            log(f"early stop at epoch {epoch}: no better validation AUC for {recipe.patience} epochs")
            break
        torch.manual_seed(seed * 10007 + epoch)
        gen = torch.Generator().manual_seed(seed * 7919 + epoch)
        perm = torch.randperm(n, generator=gen)
        net.train()
        t0, seen, loss_sum = time.time(), 0, 0.0
        bar = _bar(steps, f"{Path(stage_dir).name} epoch {epoch + 1}/{epochs}", progress and is_main())
        for s in range(steps):
            idx = perm[s * recipe.batch_size:(s + 1) * recipe.batch_size]
            idx = idx[rank * per_rank:(rank + 1) * per_rank]
            aug = gen if recipe.augment != "none" else None
            b = prepare(train.batch(idx), image_keys, device, recipe.channels_last, aug, recipe.augment)
            y = labels[idx].to(device)
            hard = y
            if recipe.label_smoothing:
                y = y * (1 - recipe.label_smoothing) + 0.5 * recipe.label_smoothing
            for g in opt.param_groups:
                g["lr"] = lr_at(recipe, epoch, s, steps)
            with autocast(precision, device):
                logits = net(b).float()
            if logits.dim() == 2:  # several heads (joint strategies): one BCE each, averaged
                y = y[:, None].expand_as(logits)
            loss = F.binary_cross_entropy_with_logits(logits, y)
            if guided:
                loss = loss + attention_loss(model.last_cam, b, hard, recipe.guide_outside, recipe.guide_lesion)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
            seen += len(idx)
            if bar:
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
                bar.update(1)
        # Every rank scores the full validation set with identical weights, so all ranks take the
        # same early-stopping decision without communicating. The weights are equal after every step;
        # BatchNorm's running statistics are not (each rank updated them from its own half-batch), so
        # every rank takes rank 0's, the ones saved.
        if world_size > 1:
            for buf in model.buffers():
                dist.broadcast(buf, 0)
        p_val = predict(model, val, image_keys, device=device, precision=precision,
                        channels_last=recipe.channels_last)
        yv = val.labels.numpy()
        v_auc = auc(yv, p_val)
        v_loss = float(F.binary_cross_entropy(torch.from_numpy(p_val).double().clamp(1e-7, 1 - 1e-7),
                                              torch.from_numpy(yv).double()))
        v_acc = float(((p_val >= 0.5) == (yv == 1)).mean())
        row = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "val_auc": v_auc, "val_loss": v_loss,
               "val_acc": v_acc, "seconds": time.time() - t0, "img_per_s": seen * world_size / (time.time() - t0)}
        state["history"].append(row)
        if bar:
            bar.set_postfix(loss=f"{row['train_loss']:.4f}", val_auc=f"{v_auc:.3f}", val_acc=f"{v_acc:.3f}")
            bar.close()
        improved = (not math.isnan(v_auc) and v_auc > state["best_auc"]) or state["best_epoch"] < 0
        if improved:
            state["best_auc"], state["best_epoch"] = (v_auc if not math.isnan(v_auc) else -1.0), epoch
        state["epoch"] = epoch + 1
        log(json.dumps(row))
        if is_main():
            if report is not None:  # before the checkpoint: no checkpointed epoch goes unlogged
                report.epoch(row, images=seen * world_size, best_epoch=state["best_epoch"] + 1,
                             best_val_auc=state["best_auc"])
            if improved:
                save_checkpoint({"model": model.state_dict(), "epoch": epoch + 1, **sizes_record(model)},
                                stage_dir / "best.pt")
            save_resume_point(last, model, opt, state)
    summary = {"best_epoch": state["best_epoch"] + 1, "best_val_auc": state["best_auc"],
               "epochs_run": state["epoch"], "history": state["history"], "recipe": recipe.to_dict(), "seed": seed,
               "precision": precision}
    if is_main():
        atomic_write_text(stage_dir / "summary.json", json.dumps(summary, indent=1))
        if report is not None:
            report.end(best_epoch=summary["best_epoch"], best_val_auc=state["best_auc"], epochs_run=state["epoch"])
    if world_size > 1:
        dist.barrier()
    best = load_checkpoint(stage_dir / "best.pt")
    model.load_state_dict(best["model"])
    # back to the default layout: what follows in this process computes as a run resumed from best.pt does, to the bit
    model.to(memory_format=torch.contiguous_format)
    if guided:
        model.keep_cam, model.last_cam = False, None
    return summary


def _bar(total, desc, enabled):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)
