"""Stage I: train the global branch (a backbone on the whole slice).

    python -m train global --data-root ../shared/data --backbone efficientnet_lite0 --out runs/lite0
    python -m train global --recipe paper --backbone densenet169 --out runs/d169-paper   # the paper's SGD schedule
    python -m train global --out runs/demo                       # synthetic phantoms, no data needed
    python -m train global ... --resume                          # continue a killed run from its last epoch
    torchrun --nproc_per_node=4 -m train global --data-root ... --out runs/ddp           # DDP, one GPU per process
"""
from __future__ import annotations

import json
from dataclasses import asdict

from core.config import PipelineConfig
from core.data.second_source import SOURCES
from core.data.slices import resolve_data_root
from core.errors import UsageError
from core.inputs.harmonise import INPUT_MODES
from core.models.backbones import BACKBONES
from core.pipeline import Pipeline
from core.runs.runfolder import RunFolder
from core.training.recipes import BEFORE_GUIDANCE, DEFAULT_RECIPE, RECIPES
from core.training.runtime import is_main

from .common import add_data_args, add_run_args, init_distributed, pick_device


def add_model_args(p) -> None:
    add_data_args(p)
    add_run_args(p)
    p.add_argument("--backbone", default="efficientnet_lite0", choices=BACKBONES)
    p.add_argument("--init", default="imagenet", help="imagenet, scratch, or a checkpoint path")
    p.add_argument("--recipe", default=DEFAULT_RECIPE, choices=sorted(RECIPES),
                   help=f"training recipe and the run settings it is meant with (core/training/recipes.py); "
                        f"'{DEFAULT_RECIPE}' is knowledge-guided, '{BEFORE_GUIDANCE}' the recipe before guidance")
    p.add_argument("--input", default=None, choices=INPUT_MODES,
                   help="what the networks see: the harmonised lung field, or the whole slice "
                        "(core/inputs/harmonise.py); default: the recipe's")
    p.add_argument("--second-source", default=None, choices=SOURCES,
                   help="semiseg-volumes: the global branch also trains on COVID-SemiSeg's CT volumes, both classes "
                        "from one source, labelled by the segmenter (core/data/second_source.py); "
                        "default: the recipe's")
    p.add_argument("--out", required=True, help="run folder, e.g. runs/lite0")
    p.add_argument("--resume", action="store_true", help="continue a killed run from its last checkpoint")
    p.add_argument("--image-size", type=int, default=224, help="side of the slice fed to the backbones")


def add_args(p) -> None:
    add_model_args(p)
    p.add_argument("--segmenter", default=None,
                   help="a segmenter checkpoint (`python -m train infnet`) for a recipe with a lesion-attention "
                        "loss; without it the run trains its own by Algorithm 1")


def open_pipeline(args, **cfg_extra) -> Pipeline:
    device = pick_device(args.device)
    init_distributed(device)
    data_root, synthetic = resolve_data_root(args.data_root)
    run = RunFolder(args.out, create=True)
    cfg = PipelineConfig(backbone=args.backbone, init=args.init, recipe=args.recipe, input=args.input,
                         second_source=args.second_source, seed=args.seed, epochs=args.epochs,
                         batch_size=args.batch_size, image_size=args.image_size, hires_size=2 * args.image_size,
                         **cfg_extra)
    if is_main():
        previous = run.config.get("pipeline")
        if previous and not args.resume and previous != asdict(cfg):
            raise UsageError(f"{run.path} was trained with another configuration; pass --resume to continue it "
                             "as it was, or choose another --out")
        run.update_config(data_root=str(data_root), synthetic=synthetic, pipeline=asdict(cfg), device=str(device))
    return Pipeline(run, data_root, cfg, device=device, progress=not args.no_progress, resume=args.resume)


def run(args) -> dict:
    pipe = open_pipeline(args, segmenter=args.segmenter)
    if pipe.run.has_stage("global") and (pipe.run.stage("global") / "summary.json").exists() and not args.resume:
        raise UsageError(f"{pipe.run.path}/global already holds a trained model; choose another --out")
    model = pipe.global_model()
    pipe._probs("global", model, {"image": pipe.ds.images}, ("image",), precision=pipe.recipe.precision)
    summary = json.loads((pipe.run.stage("global") / "summary.json").read_text())
    if is_main():
        pipe.log(f"global: best epoch {summary['best_epoch']} val AUC {summary['best_val_auc']:.4f}")
        print(json.dumps({"run": str(pipe.run.path), "best_epoch": summary["best_epoch"],
                          "best_val_auc": summary["best_val_auc"]}))
    return 0
