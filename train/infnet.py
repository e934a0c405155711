"""Infection segmentation: Inf-Net-style segmenter + Algorithm 1 (pseudo-label rounds).

    python -m train infnet --data-root ../shared/data --out runs/infnet --threads 1   # the pipeline's settings:
        # 40 epochs on the labelled slices, 5 rounds of 100 slices x 40 steps, 10 labelled-only epochs (17 min)
    python -m train infnet --data-root ../shared/data --out runs/infnet-full --max-rounds all --threads 1
        # every round until the pool is empty (24 rounds, 44 min here)
    python -m train infnet ... --sources semiseg --ignore-band 0.1,0.9    # pool and pseudo-label guards
    python -m train infnet --out runs/infnet-demo --size 128 --epochs 10          # synthetic phantoms, no data needed

Round 0 trains on the 50 labelled COVID-SemiSeg slices; each later round pseudo-labels --per-round
random slices of the unlabelled pool (COVID-SemiSeg unlabelled + COVID-CT, class labels unused) and
fine-tunes for --epochs-per-round passes (or --steps-per-round steps). Pseudo labels come from the
mirrored-slice average; pixels inside --ignore-band carry no loss; --labelled-share of every batch
comes from the labelled slices. The 48 labelled test slices are scored after round 0 and after the
last round, with and without the mirrored test-time pass. A killed run resumes after its last
finished round (same --out).
Every Algorithm 1 flag is a field of core.config.SegConfig, whose default is declared there
once (the pipeline's settings; precision fp32, --precision bf16 is faster on GPUs and AVX512-BF16
CPUs); OUT/metrics.json "config" records the resolved configuration.
Prints one JSON summary; writes OUT/best.pt, OUT/metrics.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from core.config import SegConfig
from core.data.slices import resolve_data_root
from core.errors import UsageError
from core.training.segmentation import semi_supervised

from .common import add_config_args, add_data_args, add_run_args, config_from_args, pick_device

KEYS = ("dice", "iou", "sensitivity", "specificity")


def add_args(p: argparse.ArgumentParser) -> None:
    add_data_args(p)
    add_run_args(p, schedule=False)  # --seed --device --no-progress; --epochs --batch-size are SegConfig's
    p.add_argument("--out", required=True, help="output folder, e.g. runs/infnet")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (1 is fastest when another job shares the cores)")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue a run already in --out")
    # Every Algorithm 1 setting, one flag per core.config.SegConfig field (--size, --epochs, ...,
    # --ignore-band LO,HI, --no-pseudo-tta), with its one default.
    add_config_args(p, SegConfig, title="Algorithm 1 (core.config.SegConfig)")


def run(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config_from_args(args, SegConfig)
    device = pick_device(args.device)
    data_root, synthetic = resolve_data_root(args.data_root)
    if args.no_resume and (Path(args.out) / "state.json").exists():
        raise UsageError(f"{args.out} already holds a run; drop --no-resume to continue it or choose another --out")
    t0 = time.time()
    m = semi_supervised(data_root, args.out, cfg, seed=args.seed, device=device, progress=not args.no_progress)
    summary = {"out": args.out, "rounds": m["rounds"], "n_train_final": m["n_train_final"],
               "labelled_only": {k: round(m["labelled_only"][k], 4) for k in KEYS},
               "after_rounds": {k: round(m["after_rounds"][k], 4) for k in KEYS},
               **({"final_after_polish": {k: round(m["final"][k], 4) for k in KEYS}} if m["polish_epochs"] else {}),
               "final_tta": {k: round(m["final_tta"][k], 4) for k in KEYS},
               "round0_train_seconds": m["history"][0]["train_seconds"],
               "wall_seconds": round(time.time() - t0, 1)}
    if synthetic:
        summary = {"data": "synthetic phantoms (not a real-data result)", **summary}
    print(json.dumps(summary))
    return summary
