"""Self-Trans initialisation: contrastive self-supervision on CT slices, starting from ImageNet.

    python -m train selfsup --data-root ../shared/data --backbone efficientnet_lite0 --out runs/selftrans-lite0.pt
    python -m train pipeline --init runs/selftrans-lite0.pt ...        # then use it as any branch's --init
    python -m train reproduce --inits imagenet,selftrans --selftrans-ckpt runs/selftrans-lite0.pt ...

Uses the unlabelled COVID-SemiSeg slices and the COVID-CT training slices (labels never read).
Killed runs continue from OUT.last.pt (pass --no-resume to start over).
"""
from __future__ import annotations

import json

from core.config import PipelineConfig
from core.data.covidct import read_covidct
from core.data.image_cache import load_stack
from core.data.semiseg import read_unlabelled
from core.data.slices import resolve_data_root
from core.models.backbones import BACKBONES
from core.training.selfsup import pretrain

from .common import pick_device


def add_args(p):
    p.add_argument("--data-root", default=None)
    p.add_argument("--backbone", default=PipelineConfig().backbone, choices=BACKBONES)
    p.add_argument("--init", default="imagenet")
    p.add_argument("--out", required=True, help="checkpoint file to write")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, default=PipelineConfig().image_size)
    p.add_argument("--limit", type=int, default=None, help="use at most this many slices (short runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--no-progress", action="store_true")


def selfsup_paths(root, limit: int | None = None) -> list:
    """The slices Self-Trans learns from: COVID-SemiSeg's unlabelled ones and COVID-CT's training split."""
    paths = [s.image for s in read_unlabelled(root)] + [s.path for s in read_covidct(root) if s.split == "train"]
    return paths[:limit] if limit else paths


def run(args):
    root, _ = resolve_data_root(args.data_root)
    paths = selfsup_paths(root, args.limit)
    images = load_stack(paths, args.image_size)
    state = pretrain(images, args.out, backbone=args.backbone, init=args.init, epochs=args.epochs,
                     batch_size=args.batch_size, seed=args.seed, device=pick_device(args.device),
                     resume=not args.no_resume, progress=not args.no_progress)
    print(json.dumps({"out": args.out, "slices": len(paths), "epochs": state["epoch"],
                      "final_loss": state["history"][-1]["loss"] if state["history"] else None}))
    return 0
