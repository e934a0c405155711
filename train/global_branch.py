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
from pathlib import Path

from core.config import PipelineConfig
from core.data.slices import training_data_root
from core.errors import UsageError
from core.models.backbones import NAMED_INITS
from core.pipeline import Pipeline
from core.runs.runfolder import RunFolder
from core.training.runtime import is_main

from .common import add_config_args, add_data_args, add_run_args, config_from_args, init_distributed, pick_device

# the settings stage I reads (core.config.PipelineConfig); `train pipeline` takes every one
GLOBAL_SETTINGS = ("backbone", "init", "recipe", "input", "second_source", "seed", "epochs", "batch_size",
                   "image_size", "segmenter")


def add_model_args(p, settings=GLOBAL_SETTINGS) -> None:
    """--data-root, --device, --no-progress, --out, --resume and one flag per run setting in `settings` (None:
    every PipelineConfig field), derived from core.config.PipelineConfig with its default and help."""
    add_data_args(p)
    add_run_args(p, schedule=False, seed=False)  # --seed --epochs --batch-size are PipelineConfig's
    add_config_args(p, PipelineConfig, only=settings, title="run settings (core.config.PipelineConfig)")
    p.add_argument("--out", required=True, help="run folder, e.g. runs/lite0")
    p.add_argument("--resume", action="store_true", help="continue a killed run from its last checkpoint")


def add_args(p) -> None:
    add_model_args(p)


def open_pipeline(args, **cfg_extra) -> Pipeline:
    """The Pipeline of the run folder --out with the flags' configuration (and `cfg_extra`). A run already
    there must have been trained with the same one (--resume continues it as it was); one saved in an older
    format is refused, naming `python -m train migrate`."""
    cfg = config_from_args(args, PipelineConfig, **cfg_extra)
    if cfg.init not in NAMED_INITS and not Path(cfg.init).is_file():  # said before any slice is read
        raise UsageError(f"--init {cfg.init}: checkpoint file not found")
    device = pick_device(args.device)
    init_distributed(device)
    data_root, synthetic = training_data_root(args.data_root)  # before the run folder is made or its config rewritten
    run = RunFolder(args.out, create=True)
    if is_main():
        previous = run.config.get("pipeline")
        if previous and asdict(PipelineConfig.from_saved(previous, str(run.path))) != asdict(cfg) and not args.resume:
            raise UsageError(f"{run.path} was trained with another configuration; pass --resume to continue it "
                             "as it was, or choose another --out")
        run.update_config(data_root=str(data_root), synthetic=synthetic, pipeline=asdict(cfg), device=str(device))
    return Pipeline(run, data_root, cfg, device=device, progress=not args.no_progress, resume=args.resume)


def run(args) -> dict:
    pipe = open_pipeline(args)
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
