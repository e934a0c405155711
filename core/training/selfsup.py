"""Self-Trans-style initialisation: contrastive self-supervision (SimCLR, NT-Xent) on CT slices.

He et al.'s Self-Trans starts from ImageNet weights and continues with contrastive learning on CT
slices before fine-tuning. Here: two strongly augmented views of each slice (core.inputs.augment "strong"
plus random crops), a two-layer projection head, NT-Xent loss (temperature 0.2). The unlabelled
COVID-SemiSeg slices and the COVID-CT *training* slices are used, labels never read; validation
and test slices are left out so the initialisation cannot see them.
The output checkpoint holds {"model": {"backbone.*": ...}}: any `--init FILE` accepts it.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.inputs.augment import augment_batch
from core.models.backbones import build_backbone
from core.runs.checkpoint import resume as resume_from
from core.runs.checkpoint import save_checkpoint, save_resume_point
from core.training.runtime import autocast


def random_crops(x: torch.Tensor, gen: torch.Generator, min_scale: float = 0.5) -> torch.Tensor:
    """Random resized crops (area share min_scale..1), back to the input size."""
    b, _, h, w = x.shape
    s = torch.sqrt(torch.rand(b, generator=gen) * (1 - min_scale) + min_scale)
    cy = (torch.rand(b, generator=gen) * 2 - 1) * (1 - s)
    cx = (torch.rand(b, generator=gen) * 2 - 1) * (1 - s)
    zero = torch.zeros(b)
    theta = torch.stack([torch.stack([s, zero, cx], 1), torch.stack([zero, s, cy], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False).to(x.device, x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", align_corners=False)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """SimCLR loss: each view's positive is the other view of the same slice, all else negatives."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.t() / temperature
    n = len(z1)
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(sim.device)
    return F.cross_entropy(sim, target)


class SimCLR(nn.Module):
    def __init__(self, backbone, proj_dim: int = 128):
        super().__init__()
        self.backbone = backbone
        k = backbone.num_features
        self.head = nn.Sequential(nn.Linear(k, k), nn.ReLU(inplace=True), nn.Linear(k, proj_dim))

    def forward(self, x):
        return self.head(self.backbone.pool(self.backbone.features(x)))


def pretrain(images: torch.Tensor, out: Path, backbone: str = "efficientnet_lite0", init: str = "imagenet",
             epochs: int = 20, batch_size: int = 32, lr: float = 3e-4, seed: int = 0, device="cpu",
             precision: str = "bf16", channels_last: bool = False, resume: bool = True, progress: bool = True,
             log=print) -> dict:
    """images: (N, 1, S, S) uint8, on any device (on the GPU, crops and augmentation run there too).
    Writes `out` (backbone weights) and `out`.last.pt (resume state)."""
    out = Path(out)
    device = torch.device(device)
    torch.manual_seed(seed)
    model = SimCLR(build_backbone(backbone, init)).to(device)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=layout)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=1e-4)
    last = out.with_name(out.name + ".last.pt")
    state = resume_from(last, model, opt) if resume else None
    if state is not None:
        log(f"selfsup: resumed after epoch {state['epoch']}")
    else:
        state = {"epoch": 0, "history": []}
    n = len(images)
    steps = max(1, n // batch_size)
    for epoch in range(state["epoch"], epochs):
        gen = torch.Generator().manual_seed(seed * 7919 + epoch)
        torch.manual_seed(seed * 10007 + epoch)
        perm = torch.randperm(n, generator=gen)
        model.train()
        t0, total = time.time(), 0.0
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=steps, desc=f"selfsup {epoch + 1}/{epochs}", leave=False)
        for s in range(steps):
            x = images[perm[s * batch_size:(s + 1) * batch_size]].float().div(255)
            v1 = augment_batch(random_crops(x, gen), gen, "strong").to(device).contiguous(memory_format=layout)
            v2 = augment_batch(random_crops(x, gen), gen, "strong").to(device).contiguous(memory_format=layout)
            with autocast(precision, device):
                z1, z2 = model(v1).float(), model(v2).float()
            loss = nt_xent(z1, z2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
            if bar:
                bar.set_postfix(loss=f"{total / (s + 1):.4f}")
                bar.update(1)
        if bar:
            bar.close()
        state["epoch"] = epoch + 1
        state["history"].append({"epoch": epoch + 1, "loss": total / steps, "seconds": time.time() - t0})
        log(json.dumps(state["history"][-1]))
        save_resume_point(last, model, opt, state)
        save_checkpoint({"model": {f"backbone.{k}": v for k, v in model.backbone.state_dict().items()},
                         "selfsup": json.dumps({"backbone": backbone, "init": init, **state})}, out)
    return state
