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
Prints one JSON summary; writes OUT/best.pt, OUT/metrics.json.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from core.backbones import BACKBONES
from core.pipeline import PipelineConfig
from core.segmentation import semi_supervised
from core.slices import resolve_data_root

from .common import add_data_args, add_run_args, pick_device, rounds_arg

SEG = PipelineConfig().seg  # the pipeline's Algorithm 1 settings are this command's defaults

KEYS = ("dice", "iou", "sensitivity", "specificity")


def add_args(p: argparse.ArgumentParser) -> None:
    add_data_args(p)
    add_run_args(p)  # --seed --device --epochs (round 0, default 40) --batch-size (default 8) --no-progress
    p.add_argument("--out", required=True, help="output folder, e.g. runs/infnet")
    p.add_argument("--encoder", default="efficientnet_lite0", choices=BACKBONES)
    p.add_argument("--init", default="imagenet", help="encoder init: imagenet, scratch, or a checkpoint path")
    p.add_argument("--epochs-per-round", type=int, default=2,
                   help="fine-tuning passes after each pseudo-label round (when --steps-per-round is 0)")
    p.add_argument("--per-round", type=int, default=100, help="unlabelled slices pseudo-labelled per round")
    p.add_argument("--max-rounds", type=rounds_arg, default=SEG["max_rounds"],
                   help="pseudo-label rounds, or 'all' (until the pool is empty)")
    p.add_argument("--size", type=int, default=256, help="training/inference side in pixels (multiple of 32; Inf-Net: 352)")
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold for pseudo labels and metrics")
    p.add_argument("--precision", default="bf16", choices=("fp32", "bf16"), help="autocast precision (bf16: faster on AVX512-BF16 CPUs and GPUs)")
    p.add_argument("--sources", default="semiseg,covidct", help="unlabelled pool: semiseg, covidct or both")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (1 is fastest when another job shares the cores)")
    p.add_argument("--polish-epochs", type=int, default=SEG["polish_epochs"],
                   help="after the last round, fine-tune on the labelled slices only (Semi-Inf-Net style; 0: off)")
    p.add_argument("--no-pseudo-tta", action="store_true", help="pseudo-label from the slice alone, not its mirror average")
    p.add_argument("--ignore-band", default="0.1,0.9",
                   help="LO,HI: pseudo-label pixels with LO < p < HI carry no loss; 'none' keeps every pixel")
    p.add_argument("--labelled-share", type=float, default=0.5,
                   help="share of every batch drawn from the labelled slices; 0 draws uniformly")
    p.add_argument("--steps-per-round", type=int, default=SEG["steps_per_round"],
                   help="optimiser steps per round; 0: --epochs-per-round passes over the grown set")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue a run already in --out")


def parse_band(text: str) -> tuple[float, float] | None:
    if text.strip().lower() == "none":
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise SystemExit(f"--ignore-band: expected LO,HI (e.g. 0.1,0.9) or none, got {text!r}") from None
    return lo, hi


def run(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.size % 32:
        raise SystemExit("--size must be a multiple of 32")
    device = pick_device(args.device)
    data_root, synthetic = resolve_data_root(args.data_root)
    sources = tuple(s.strip() for s in args.sources.split(",") if s.strip())
    if not set(sources) <= {"semiseg", "covidct"}:
        raise SystemExit(f"--sources: unknown source in {args.sources!r}")
    if args.no_resume and (__import__("pathlib").Path(args.out) / "state.json").exists():
        raise SystemExit(f"{args.out} already holds a run; drop --no-resume to continue it or choose another --out")
    t0 = time.time()
    m = semi_supervised(data_root, args.out, per_round=args.per_round, max_rounds=args.max_rounds,
                        epochs=args.epochs or 40, epochs_per_round=args.epochs_per_round, seed=args.seed,
                        size=args.size, device=device, encoder=args.encoder, init=args.init,
                        threshold=args.threshold, batch_size=args.batch_size or 8, lr=args.lr,
                        precision=args.precision, sources=sources, polish_epochs=args.polish_epochs,
                        pseudo_tta=not args.no_pseudo_tta, ignore_band=parse_band(args.ignore_band),
                        labelled_share=args.labelled_share or None, steps_per_round=args.steps_per_round or None,
                        progress=not args.no_progress)
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
