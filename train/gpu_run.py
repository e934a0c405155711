"""The paper's experiments at paper scale on one GPU, planned to a time budget: one command for a lent machine.

    bash bench/gpu_run.sh                                          # on the GPU machine (see that file)
    python -m train gpu-run --pack pack --budget-min 8 --out OUT
    python -m train gpu-run --pack P --out O --image-size 64 --epochs 1 ...   # CPU dry run (tests/test_gpu_run.py)

Work: the segmenter (Algorithm 1, once, shared by every run), then the runs of Tables 1-3, most
important first, each backbone's Self-Trans pre-training (SimCLR on the COVID-CT training slices and
the unlabelled COVID-SemiSeg slices; as many epochs as --selfsup-share of the budget allows, up to
--selfsup-epochs) just before the first run that needs it:

1. the headline: Lite0, the default recipe, ImageNet vs Self-Trans init, seed 0;
2. the shortcut audit of its first run (only when train/shortcut.py exists); with --audit every, the
   audit of every G-H-I-F run instead, right after that run;
3. the headline's other seeds;
4. one seed of every other cell: Table 3's joint strategies, Lite2, the paper's 50-epoch schedule;
5. the other seeds of those.

Speed is measured in the first minute (a few training steps per backbone, Self-Trans's first epochs)
and again after every run (per-stage seconds per epoch); a run whose estimate does not fit the time
left is dropped, with the reason, never started and then killed (later, cheaper runs still run when
they fit). Should a run overrun anyway, a guard
writes what has finished and ends the process at the budget plus --grace-s. Every run trains in bf16
autocast with channels-last (the recipes as named otherwise); Self-Trans and the global branch keep
their slices on the GPU.

Writes into --out: summary.md (all of it on one page), table1_2.{md,csv}, table3.{md,csv}, all_runs.csv,
plan.json, timings.json, utilisation.csv, log.txt, and each run's small files (config, logs, stage
summaries, predictions, metrics) under runs/. Checkpoints and caches stay in --work.

Its parts are in train/gpu/ (the plan and budget rules, measuring, the warm-up, the runner, the outputs);
docs/gpu.md tells a user of a lent GPU machine what to run and why.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from .gpu.machine import check_imports, describe_pack, use_fast_paths
from .gpu.measure import GpuSampler, calibrate
from .gpu.outputs import write_outputs
from .gpu.plan import Speed, ordered_jobs
from .gpu.runner import Runner, start_budget_guard
from .gpu.state import State
from .gpu.warm import warm_for_recipes


def add_args(p):
    from core.config import PipelineConfig
    from core.inputs.harmonise import INPUT_MODES
    from core.training.recipes import BEFORE_GUIDANCE, DEFAULT_RECIPE
    from core.training.segmentation import SegConfig

    from .common import add_config_args

    p.add_argument("--pack", required=True, help="a data pack (python -m train pack), or any data root")
    p.add_argument("--budget-min", type=float, default=8.0, help="minutes for everything, writing included")
    p.add_argument("--out", required=True, help="folder for the tables, timings and run summaries")
    p.add_argument("--work", default=None, help="checkpoints and caches (default: a folder in the temp dir)")
    p.add_argument("--backbones", default="efficientnet_lite0,efficientnet_lite2")
    p.add_argument("--inits", default="imagenet,selftrans")
    p.add_argument("--recipes", default=f"{DEFAULT_RECIPE},{BEFORE_GUIDANCE},paper", help="the first is the headline's")
    p.add_argument("--strategies", default="G-H-I-F,GHI-F,GHIF")
    p.add_argument("--input", default=None, choices=INPUT_MODES,
                   help="what every run's networks see (core/inputs/harmonise.py); default: each recipe's")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=None, help="override every image stage's epochs (dry runs)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--image-size", type=int, default=PipelineConfig().image_size)
    p.add_argument("--lesion-size", type=int, default=PipelineConfig().lesion_size)
    p.add_argument("--selfsup-epochs", type=int, default=300, help="Self-Trans epochs wanted (fewer if the budget says so)")
    p.add_argument("--selfsup-min-epochs", type=int, default=30, help="fewer than this: Self-Trans runs are dropped")
    p.add_argument("--selfsup-share", type=float, default=0.3, help="most of the budget one backbone's Self-Trans may take")
    p.add_argument("--selfsup-batch", type=int, default=256)
    p.add_argument("--calibration-steps", type=int, default=10)
    p.add_argument("--shortcut-limit", type=int, default=None, help="slices per set for the shortcut audit")
    p.add_argument("--audit", default="first", choices=("first", "every"),
                   help="shortcut audit of the first finished run, or of every G-H-I-F run right after it")
    p.add_argument("--shortcut-seconds", type=float, default=60.0,
                   help="the most the shortcut audit may take (planned at half of it)")
    p.add_argument("--workers", type=int, default=None, help="processes that decode the slices up front")
    p.add_argument("--grace-s", type=float, default=30.0, help="past the budget by this much: write and exit")
    p.add_argument("--device", default="auto")
    # The shared segmenter: one --seg-* flag per SegConfig field. One default of this command's own:
    # the segmenter trains in bf16 here (the GPU's fast path; --seg-precision fp32 to change it).
    add_config_args(p, SegConfig, prefix="seg-", defaults={"precision": "bf16"},
                    title="segmenter, Algorithm 1 (core.training.segmentation.SegConfig)")


def run(args):
    t_start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(tempfile.gettempdir()) / "covid-lab-gpu-run"
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("COVID_LAB_CACHE", str(work / "cache"))

    from core.data.slices import resolve_data_root

    s = State(args=args, t0=t_start, deadline=t_start + args.budget_min * 60, out=out)
    root, s.synthetic = resolve_data_root(args.pack)
    s.pack = describe_pack(root)
    (out / "log.txt").write_text("")
    print(f"gpu-run: pack {s.pack['summary']}", flush=True)
    check_imports(args.backbones.split(","))

    from .common import pick_device

    device = pick_device(args.device)
    backbones, inits = args.backbones.split(","), args.inits.split(",")
    recipes, strategies = args.recipes.split(","), args.strategies.split(",")
    s.jobs = ordered_jobs(backbones, inits, recipes, strategies, args.seeds, args.audit)
    runner = Runner(s, root, work, device)

    # 1. decode everything once, in parallel (before any GPU work)
    t0 = time.time()
    workers = args.workers or min(16, os.cpu_count() or 1)
    warmed = warm_for_recipes(root, recipes, args, runner.seg_config(), workers)
    runner.stage("warm-up (decode, frame)", t0, warmed)
    runner.say(f"warm-up: {warmed['slices']} slice reads cached in {time.time() - t0:.0f} s ({workers} processes)")

    s.device_name = use_fast_paths(device)
    s.device = str(device)
    s.sampler = GpuSampler(device).start()
    guard = start_budget_guard(s, args.grace_s)

    # 2. speed: a few training steps per backbone
    from core.data.covidct import read_covidct

    s.speed = Speed(sum(1 for x in read_covidct(root) if x.split == "train"))
    t0 = time.time()
    s.speed.step_s = calibrate(backbones, args.image_size, args.batch_size, recipes[0], device, args.calibration_steps)
    runner.stage("calibration", t0, {b: round(v, 4) for b, v in s.speed.step_s.items()})
    runner.say("calibration: " + ", ".join(f"{b} {v * 1000:.0f} ms/step" for b, v in s.speed.step_s.items()))
    for j in s.jobs:
        if j.kind == "pipeline":
            j.estimate_s = round(runner.estimate(j), 1)
    drop = runner.project()
    runner.say(f"plan: {len(s.jobs)} jobs, ~{sum(j.estimate_s or 0 for j in s.jobs) / 60:.1f} min if all ran, "
               f"{runner.left() / 60:.1f} min left: {len(s.jobs) - len(drop)} should fit"
               + (f"; expected to be dropped (least important): {', '.join(j.name for j in drop)}" if drop else ""))
    write_outputs(s)

    # 3. the jobs, most important first
    runner.run_all()
    guard.cancel()
    s.sampler.stop()
    if device.type == "cuda":
        import torch

        s.notes.append(f"peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")
    write_outputs(s, final=True)
    done = sum(j.status in ("done", "reused") for j in s.jobs)
    dropped = [j.name for j in s.jobs if j.status == "dropped"]
    failed = [j.name for j in s.jobs if j.status == "failed"]
    runner.say(f"done: {done} jobs finished, {len(dropped)} dropped, {len(failed)} failed in "
               f"{(time.time() - t_start) / 60:.1f} min; {out / 'summary.md'}")
    if dropped:
        print("dropped (least important last): " + ", ".join(dropped), flush=True)
    if failed:
        print("failed: " + ", ".join(failed), flush=True)
    print(json.dumps({"out": str(out), "finished": done, "dropped": dropped, "failed": failed,
                      "minutes": round((time.time() - t_start) / 60, 2)}))
    core_failed = [j for j in s.jobs if j.status == "failed" and j.kind != "shortcut"]  # the audit is not ours
    return 1 if core_failed or not any(j.kind == "pipeline" and j.status in ("done", "reused") for j in s.jobs) else 0
