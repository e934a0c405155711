"""Segmenting with a trained segmenter (core.models.infnet.InfNet): load its checkpoint, turn slices into
lesion probabilities. Its training and Algorithm 1 are core.training.segmentation; the inference settings
(precision, mirrored pass) are core.config.SegConfig.inference."""
from __future__ import annotations

import torch

from core.models.infnet import InfNet
from core.runs.checkpoint import load_checkpoint
from core.training.runtime import autocast

MODEL_KEYS = ("encoder", "channels", "ra_channels", "edge_channels")  # a checkpoint's "config" that builds the model


def as_float01(x: torch.Tensor) -> torch.Tensor:
    """uint8 images to float in [0, 1]; float images as they are."""
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


@torch.no_grad()
def segment(model: InfNet, images01: torch.Tensor, batch_size: int = 16, device=None, precision: str = "fp32",
            tta: bool = False) -> torch.Tensor:
    """(N,1,S,S) images (float in [0,1] or uint8) -> (N,1,S,S) float infection probabilities (CPU).
    `tta`: average with the left-right mirrored prediction."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device).eval()
    out = []
    for i in range(0, len(images01), batch_size):
        x = as_float01(images01[i:i + batch_size]).to(device).contiguous(memory_format=torch.channels_last)
        with autocast(precision, device):
            p = torch.sigmoid(model(x)["mask"][-1].float())
            if tta:
                p = 0.5 * (p + torch.sigmoid(model(x.flip(-1))["mask"][-1].float()).flip(-1))
        out.append(p.float().cpu())
    if not out:
        s = images01.shape[-1]
        return torch.zeros(0, 1, s, s)
    return torch.cat(out)


def load_segmenter(path, device="cpu") -> InfNet:
    """An InfNet from a checkpoint of core.training.segmentation ({"model": state dict, "config": {...}}), eval mode."""
    ckpt = load_checkpoint(path)
    cfg = ckpt.get("config", {})
    model = InfNet(init="scratch", **{k: cfg[k] for k in MODEL_KEYS if k in cfg})
    model.load_state_dict(ckpt["model"])
    return model.to(device).to(memory_format=torch.channels_last).eval()
