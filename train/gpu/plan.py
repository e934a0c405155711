"""The plan of a gpu-run: its jobs, most important first, what each is estimated to take, and the budget
rules that run or drop them (the order and the rules are told in train/gpu_run.py's docstring)."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

# Seconds per epoch-step of a stage, relative to a bare training step (validation, data, guidance
# losses...), and seconds outside the trained stages, before a run of that kind has been measured.
STAGE_FACTOR = {"G-H-I-F": 1.5, "joint": 4.0}
FIXED_S = {"G-H-I-F": 20.0, "joint": 20.0}
MARGIN = 1.15  # estimates are multiplied by this before they are compared with the time left
SEGMENTER_PLANNED_S = 60.0  # what the projection books for the segmenter, never dropped (no estimate of its own)
SELFSUP_SLICES_GUESS = 2000  # Self-Trans's slices before they are loaded (its estimate's epoch length)


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
    return Job(f"{backbone}-{init}-{recipe}-{strategy}-s{seed}", "pipeline", backbone=backbone, init=init,
               recipe=recipe, strategy=strategy, seed=seed, tier=tier)


def ordered_jobs(backbones, inits, recipes, strategies, seeds, audit="first") -> list[Job]:
    """Every job, most important first (see train/gpu_run.py's docstring); prerequisites come first.
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


class Planner:
    """The budget rules over a State's jobs: what each job is estimated to take, what it needs first, the
    time left, and whether it fits. The Runner is a Planner that also runs the jobs."""

    def __init__(self, state):
        self.s = state
        self.clock = time.time  # the planner's clock (tests replace it)
        self.selfsup_slices: int | None = None  # Self-Trans's slices, once they are loaded

    def budget_s(self) -> float:
        return self.s.args.budget_min * 60

    def reserve(self) -> float:
        """Seconds kept for writing the tables and the summary at the end."""
        return 10.0 + 0.03 * self.budget_s()

    def left(self) -> float:
        return self.s.deadline - self.reserve() - self.clock()

    def estimate(self, job: Job) -> float:
        a = self.s.args
        if job.kind == "pipeline":
            return self.s.speed.estimate(job, a.epochs, a.batch_size)
        if job.kind == "shortcut":
            return a.shortcut_seconds / 2
        if job.kind == "selfsup":  # at least the minimum epochs, from the classifier's step time
            step = self.s.speed.step_s.get(job.backbone, 1.0)
            n = self.selfsup_slices if self.selfsup_slices is not None else SELFSUP_SLICES_GUESS
            per_epoch = max(1, n // a.selfsup_batch) * step * 2 * a.selfsup_batch / 32
            return min(a.selfsup_min_epochs, a.selfsup_epochs) * per_epoch
        return 0.0

    def selfsup_seconds(self, job: Job) -> float:
        """What a Self-Trans job will take if it gets its share: the share, or its wanted epochs if fewer."""
        a = self.s.args
        per_min_epochs = self.estimate(job) / max(1, min(a.selfsup_min_epochs, a.selfsup_epochs))
        return min(a.selfsup_share * self.budget_s(), per_min_epochs * a.selfsup_epochs)

    def selfsup_allowed_s(self, dependent: Job | None, spent_s: float) -> float:
        """Seconds a Self-Trans job may still train: its share of the budget less what it has spent, and no
        more than leaves time for the first run that needs it."""
        a = self.s.args
        after = self.s.speed.estimate(dependent, a.epochs, a.batch_size) * MARGIN if dependent else 0.0
        return min(a.selfsup_share * self.budget_s() - spent_s, self.left() - after)

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

    def need_s(self, job: Job, todo: list[Job]) -> float:
        """Seconds, with the margin, that starting `job` commits: itself, its prerequisites still to run
        (`todo`), and for a Self-Trans job the first run that needs it (worth it only if that fits too)."""
        after = self.dependent_of(job) if job.kind == "selfsup" else None
        return MARGIN * (job.estimate_s + sum(self.estimate(d) for d in todo) + (self.estimate(after) if after else 0.0))

    def project(self) -> list[Job]:
        """Mark every job "run" or "drop" as run_all would if every estimate held; returns those dropped."""
        t = self.left()
        for j in self.s.jobs:
            need = SEGMENTER_PLANNED_S if j.kind == "segmenter" else \
                self.selfsup_seconds(j) if j.kind == "selfsup" else self.estimate(j)
            if j.kind == "segmenter" or (all(d.projected == "run" for d in self.needs(j)) and MARGIN * need <= t):
                j.projected, t = "run", t - need
            else:
                j.projected = "drop"
        return [j for j in self.s.jobs if j.projected == "drop"]
