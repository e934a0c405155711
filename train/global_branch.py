"""Stage I: train the global branch (a backbone on the whole slice).

    python -m train global --data-root ../shared/data --backbone efficientnet_lite0 --out runs/lite0
    python -m train global --recipe paper --backbone densenet169 --out runs/d169-paper   # the paper's SGD schedule
    python -m train global --out runs/demo                       # synthetic phantoms, no data needed
    torchrun --nproc_per_node=4 -m train global --data-root ... --out runs/ddp           # DDP, one GPU per process
"""
from __future__ import annotations

import argparse
import json

from core.backbones import BACKBONES, build_backbone
from core.models import SliceClassifier
from core.predictions import write_branch_probs
from core.recipes import DEFAULT_RECIPE, RECIPES, get_recipe
from core.runfolder import RunFolder
from core.slices import load_slice_set, resolve_data_root
from core.trainer import is_main, predict, train_stage

from .common import add_data_args, add_run_args, init_distributed, pick_device


def add_args(p: argparse.ArgumentParser) -> None:
    add_data_args(p)
    add_run_args(p)
    p.add_argument("--backbone", default="efficientnet_lite0", choices=BACKBONES)
    p.add_argument("--init", default="imagenet", help="imagenet, scratch, or a checkpoint path")
    p.add_argument("--recipe", default=DEFAULT_RECIPE, choices=sorted(RECIPES))
    p.add_argument("--out", required=True, help="run folder, e.g. runs/lite0")
    p.add_argument("--resume", action="store_true", help="continue a killed run from its last epoch")


def run(args) -> dict:
    device = pick_device(args.device)
    init_distributed(device)
    data_root, synthetic = resolve_data_root(args.data_root)
    recipe = get_recipe(args.recipe, epochs=args.epochs, batch_size=args.batch_size)
    run = RunFolder(args.out, create=True)
    if not args.resume and run.has_stage("global") and is_main():
        raise SystemExit(f"{run.path}/global already holds a trained model; pass --resume to continue it "
                         "or choose another --out")
    if is_main():
        run.update_config(data_root=str(data_root), synthetic=synthetic,
                          global_stage={"backbone": args.backbone, "init": args.init, "recipe": recipe.to_dict(),
                                        "seed": args.seed, "device": str(device)})
        run.log(f"global: start backbone={args.backbone} recipe={recipe.name} seed={args.seed}")
    ds = load_slice_set(data_root, recipe.image_size)
    model = SliceClassifier(build_backbone(args.backbone, args.init))
    summary = train_stage(model, ds.stage_data("train"), ds.stage_data("val"), recipe, run.stage("global"),
                          seed=args.seed, device=device, resume=args.resume, progress=not args.no_progress,
                          log=run.log if is_main() else (lambda m: None))
    if is_main():
        from core.slices import SPLITS

        for split in SPLITS:
            probs = predict(model, ds.stage_data(split), device=device, precision=recipe.precision)
            write_branch_probs(run, "global", [s for s in ds.slices if s.split == split], probs)
        run.log(f"global: done best epoch {summary['best_epoch']} val AUC {summary['best_val_auc']:.4f}")
        print(json.dumps({"run": str(run.path), "best_epoch": summary["best_epoch"],
                          "best_val_auc": summary["best_val_auc"]}))
    return summary
