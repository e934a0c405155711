"""The jobs of a gpu-run run against its budget: the shared segmenter, each backbone's Self-Trans, the
pipeline runs and their shortcut audits, most important first; a job that does not fit is dropped, one
that fails does not cost the others, and a guard ends the process should the budget be overrun anyway."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path

from .outputs import audit_line, copy_small, write_outputs
from .plan import Job, Planner
from .state import State

PROJECT_ROOT = Path(__file__).resolve().parents[2]
GUARD_EXIT = 3  # the exit status when the budget guard ends the process


class Dropped(Exception):
    """A job that does not fit (or cannot run here): recorded as dropped, never as failed."""


class Runner(Planner):
    def __init__(self, state: State, root: Path, work: Path, device):
        super().__init__(state)
        self.root, self.work, self.device = root, work, device
        self.lock = threading.RLock()
        self.seg_ckpt: Path | None = None
        self.selfsup_images = None
        self.data_on_gpu = device.type == "cuda"
        self.log_file = state.out / "log.txt"

    # ---- small helpers
    def say(self, msg: str) -> None:
        line = f"[{time.time() - self.s.t0:6.1f} s] {msg}"
        print(line, flush=True)
        with self.lock, open(self.log_file, "a") as f:
            f.write(line + "\n")

    def quiet(self, msg: str) -> None:
        with self.lock, open(self.log_file, "a") as f:
            f.write(f"    {msg}\n")

    def stage(self, name: str, t0: float, detail=None) -> None:
        t1 = time.time()
        util = self.s.sampler.mean(t0, t1) if self.s.sampler else None
        self.s.stages.append({"stage": name, "start_s": round(t0 - self.s.t0, 1), "seconds": round(t1 - t0, 1),
                              "gpu_util_mean": util, "detail": detail or {}})

    def seg_config(self):
        """The segmenter's SegConfig from the --seg-* flags (recorded in every run's config)."""
        from core.training.segmentation import SegConfig

        from ..common import config_from_args

        return config_from_args(self.s.args, SegConfig, prefix="seg-")

    def config(self, job: Job):
        from core.config import PipelineConfig

        a = self.s.args
        init = str(self.work / "selftrans" / f"{job.backbone}.pt") if job.init == "selftrans" else job.init
        return PipelineConfig(backbone=job.backbone, init=init, recipe=job.recipe, input=a.input, seed=job.seed,
                              epochs=a.epochs,
                              batch_size=a.batch_size, strategy=job.strategy, image_size=a.image_size,
                              lesion_size=a.lesion_size, seg=self.seg_config(),
                              segmenter=str(self.seg_ckpt) if self.seg_ckpt else None,
                              audits=False,  # its own shortcut job audits, within the budget
                              precompute=False)  # the device's runs are for tables; pages compute on a visit

    # ---- jobs
    def segmenter(self, job: Job) -> None:
        from core.training.segmentation import semi_supervised

        folder = self.work / "infnet"
        if not (folder / "best.pt").exists():
            metrics = semi_supervised(self.root, folder, self.seg_config(), seed=0, device=self.device, progress=False,
                                      log=self.quiet)
            job.note = f"Dice {metrics['final']['dice']:.3f} (test, labelled slices), {metrics['rounds']} rounds"
        self.seg_ckpt = folder / "best.pt"
        copy_small(folder, self.s.out / "runs" / "infnet")

    def selfsup(self, job: Job, dependent: Job | None) -> None:
        """Self-Trans for one backbone: a few epochs to measure, then as many as the budget allows."""
        from core.data.image_cache import load_stack
        from core.training.selfsup import pretrain

        from ..selfsup import selfsup_paths

        a = self.s.args
        ckpt = self.work / "selftrans" / f"{job.backbone}.pt"
        dependent = dependent or self.dependent_of(job)
        if self.selfsup_images is None:
            self.selfsup_images = load_stack(selfsup_paths(self.root), a.image_size)
            self.selfsup_slices = len(self.selfsup_images)
            if self.data_on_gpu:
                self.selfsup_images = self.selfsup_images.to(self.device)
        n = len(self.selfsup_images)
        kw = {"backbone": job.backbone, "init": "imagenet", "batch_size": min(a.selfsup_batch, n), "device": self.device,
              "precision": "bf16", "channels_last": True, "resume": True, "progress": False, "log": self.quiet}
        t0 = time.time()
        state = pretrain(self.selfsup_images, ckpt, epochs=min(2, a.selfsup_epochs), **kw)
        per_epoch = state["history"][-1]["seconds"]  # the last: the first also pays for cuDNN's kernel choice
        allowed = self.selfsup_allowed_s(dependent, spent_s=time.time() - t0)
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

        from ..reproduce import finished

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
        copy_small(path, self.s.out / "runs" / job.name)

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
            res = subprocess.run(cmd, check=False, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Dropped(f"stopped after {timeout:.0f} s (--shortcut-seconds)") from None
        if res.returncode != 0:
            tail = (res.stderr.strip().splitlines() or ["no message"])[-1]
            raise RuntimeError(f"train shortcut exited {res.returncode}: {tail}")
        line = res.stdout.strip().splitlines()[-1]
        if not job.target:
            (self.s.out / "shortcut.json").write_text(line + "\n")
        copy_small(self.work / "runs" / target.name, self.s.out / "runs" / target.name)  # its shortcut.json too
        job.note = f"audit of {target.name}: " + audit_line(json.loads(line))

    # ---- the loop
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
        except Exception as exc:  # noqa: BLE001  (one failed run must not cost the others)
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
                need = self.need_s(job, todo)
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


def start_budget_guard(s: State, grace_s: float) -> threading.Timer:
    """A timer that, past the budget and `grace_s`, writes what has finished and ends the process."""
    guard = threading.Timer(max(1.0, s.deadline + grace_s - time.time()), _guard, args=(s,))
    guard.daemon = True
    guard.start()
    return guard


def _guard(s: State) -> None:
    """Past the budget and the grace: write what has finished and end the process."""
    print(f"budget guard: {s.args.budget_min:g} min + {s.args.grace_s:g} s passed during {s.current or 'writing'}; "
          "writing what has finished and exiting", flush=True)
    try:
        write_outputs(s, guard=s.current or "writing")
    finally:
        os._exit(GUARD_EXIT)
