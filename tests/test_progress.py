"""The progress log (core.runs.progress), the pipeline's plan (core.training.plan) and the ETA (core.runs.eta).

Written by real training (the training loop on vectors, Algorithm 1 and the whole pipeline on the phantoms)
and read back; the ETA arithmetic on a made-up log whose answers are worked out by hand below.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from core.after_training import planned
from core.runs.eta import Estimate, duration, mean_gap, rates, run_eta, stage_cost, stage_left
from core.runs.progress import (
    DONE,
    FAILED,
    FINISHED,
    HALTED,
    PROGRESS_FILE,
    RUNNING,
    STARTING,
    STOPPED,
    TRAINING,
    WAITING,
    ProgressLog,
    RunProgress,
    fold,
    read_events,
)

STAGES_FAST = ["global", "heatmap", "infnet", "infected", "global+heatmap", "fusion"]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---- written by the pipeline -------------------------------------------------------------------------

def test_pipeline_logs_every_stage_in_its_planned_order(synthetic_run):
    rp = RunProgress.read(synthetic_run)
    assert rp.has_log and rp.state == FINISHED and not rp.damaged
    events = rp.events
    plan = next(e for e in events if e["event"] == "plan")
    stages = STAGES_FAST + [s.name for s in planned(audits=False)]  # then the stages after training
    assert [s["stage"] for s in plan["stages"]] == stages  # the recipe before guidance: segmenter after heatmap
    assert [e["stage"] for e in events if e["event"] == "stage_start"] == stages
    assert list(rp.stages) == stages and all(s.state == DONE for s in rp.stages.values())
    assert events[-1]["event"] == "done"
    for name in ("global", "heatmap", "infected", "global+heatmap", "fusion"):
        summary = json.loads((synthetic_run / name / "summary.json").read_text())
        sp = rp.stage(name)
        assert [r["epoch"] for r in sp.rows] == [h["epoch"] for h in summary["history"]]
        assert [r["train_loss"] for r in sp.rows] == pytest.approx([h["train_loss"] for h in summary["history"]])
        assert [r.get("val_auc") for r in sp.rows] == pytest.approx([h["val_auc"] for h in summary["history"]])
        assert sp.best_epoch == summary["best_epoch"] and sp.best_val_auc == pytest.approx(summary["best_val_auc"])
        assert all(r["images"] == sp.images_per_epoch for r in sp.rows)
        assert sp.end["early_stopped"] == (summary["epochs_run"] < summary["recipe"]["epochs"])
        # the early-stopping state the loop kept: epochs left before patience runs out (or the epochs end)
        for r in sp.rows:
            assert r["patience_left"] == min(r["best_epoch"] + sp.patience - r["epoch"], sp.epochs - r["epoch"])
    seg = rp.stage("infnet")
    metrics = json.loads((synthetic_run / "infnet" / "metrics.json").read_text())
    assert seg.kind == "segmenter" and seg.parts == [f"round {k}" for k in range(metrics["rounds"] + 1)]
    assert seg.rows[0]["part_name"] == "round 0"
    assert {r["part"] for r in seg.rows} == set(range(metrics["rounds"] + 1))
    assert seg.images_done == seg.planned_images  # the plan counted exactly the slices it trained on
    assert all("val_auc" not in r and r["train_loss"] > 0 for r in seg.rows)
    assert run_eta(rp).total.seconds == 0


def test_a_run_trained_before_the_log_reads_its_stage_folders(synthetic_run, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(synthetic_run, old, ignore=shutil.ignore_patterns("features", PROGRESS_FILE))
    logged, files = RunProgress.read(synthetic_run), RunProgress.read(old)
    assert not files.has_log and files.state == FINISHED
    assert list(files.stages) == STAGES_FAST
    for name, sp in files.stages.items():
        assert sp.source == "files" and sp.state == DONE
        ref = logged.stage(name)
        assert [(r["part"], r["epoch"]) for r in sp.rows] == [(r["part"], r["epoch"]) for r in ref.rows]
        assert [r["train_loss"] for r in sp.rows] == pytest.approx([r["train_loss"] for r in ref.rows])
        for key in ("val_auc", "best_epoch", "best_val_auc", "patience_left"):
            assert [r.get(key) for r in sp.rows] == pytest.approx([r.get(key) for r in ref.rows]), (name, key)
    (old / "predictions.csv").unlink()
    assert RunProgress.read(old).state == STOPPED  # no log, no predictions: not a finished run


def plan_of(recipe: str, phantom_root, **cfg):
    from core.config import PipelineConfig
    from core.training.plan import pipeline_plan

    c = PipelineConfig(recipe=recipe, **cfg)
    pipe = SimpleNamespace(cfg=c, recipe=c.recipe_obj(), branch_recipe=c.recipe_obj(branch=True), data_root=phantom_root,
                           split_rows=lambda split: range(32))
    return pipeline_plan(pipe)


def test_plan_puts_the_segmenter_where_the_pipeline_trains_it(phantom_root):
    from core.training.recipes import BEFORE_GUIDANCE, DEFAULT_RECIPE

    assert [s["stage"] for s in plan_of(BEFORE_GUIDANCE, phantom_root)] == STAGES_FAST
    guided = plan_of(DEFAULT_RECIPE, phantom_root)  # the second source and the lesion loss read its lesion maps
    assert [s["stage"] for s in guided] == ["infnet", "global", "heatmap", "infected", "global+heatmap", "fusion"]
    assert plan_of(BEFORE_GUIDANCE, phantom_root, input="lungs+lesions")[0]["stage"] == "infnet"
    assert [s["stage"] for s in plan_of(BEFORE_GUIDANCE, phantom_root, strategy="GHIF")] == \
        ["infnet", "joint", "global+heatmap"]
    assert "infnet" not in [s["stage"] for s in plan_of(BEFORE_GUIDANCE, phantom_root, segmenter="elsewhere.pt")]
    g = guided[1]
    assert (g["kind"], g["epochs"], g["patience"], g["images_per_epoch"]) == ("image", 30, 10, 32)


# ---- written by the training loops, killed and resumed ----------------------------------------------

class Killed(Exception):
    pass


class KillAfter:
    """A StageReport that lets the process 'die' right after a given epoch row is written."""

    def __init__(self, report, part: int, epoch: int):
        self.report, self.at = report, (part, epoch)

    def __getattr__(self, name):
        return getattr(self.report, name)

    def epoch(self, row, **kw):
        self.report.epoch(row, **kw)
        if (kw.get("part", 0), row["epoch"]) == self.at:
            raise Killed

    def part_hook(self, part, name, slices):
        def hook(row):
            self.epoch(row, part=part, part_name=name, slices=slices)
        return hook


def test_training_loop_killed_and_resumed_writes_each_epoch_once(tmp_path):
    from core.data.slices import StageData
    from core.models.branches import VectorHead
    from core.training.recipes import Recipe
    from core.training.trainer import train_stage

    gen = torch.Generator().manual_seed(0)
    y = (torch.arange(48) % 2).float()
    x = torch.randn(48, 6, generator=gen) + y[:, None]
    data = StageData({"v": x}, y)
    recipe = Recipe("tiny", "adamw", lr=1e-2, weight_decay=0.0, batch_size=16, epochs=6, schedule="cosine",
                     patience=3, augment="none")
    log = ProgressLog.of_run(tmp_path)
    stage = tmp_path / "head"
    with pytest.raises(Killed):
        train_stage(VectorHead({"v": 6}), data, data, recipe, stage, image_keys=(), progress=False, log=lambda m: None,
                    report=KillAfter(log.stage("head", "vector"), 0, 3))
    rp = RunProgress.read(tmp_path)  # the process that wrote it (this one) still runs
    assert rp.state == TRAINING and rp.stage("head").state == RUNNING and rp.stage("head").epochs_done == 3
    # killed after epoch 3's row, before its checkpoint; then a line cut off mid-write
    killed_row = rp.stage("head").rows[-1]
    with open(tmp_path / PROGRESS_FILE, "a") as f:
        f.write('{"event": "epoch", "stage": "he')
    summary = train_stage(VectorHead({"v": 6}), data, data, recipe, stage, image_keys=(), resume=True, progress=False,
                          log=lambda m: None, report=log.stage("head", "vector"))
    events, damaged = read_events(tmp_path / PROGRESS_FILE)
    assert damaged == 1 and events[-1]["event"] == "stage_end"  # the next write started a fresh line
    sp = RunProgress.read(tmp_path).stage("head")
    assert sp.state == DONE and [r["epoch"] for r in sp.rows] == [h["epoch"] for h in summary["history"]]
    assert killed_row not in sp.rows  # epoch 3 trained again from epoch 2's checkpoint: its new row counts
    starts = [e for e in events if e["event"] == "stage_start"]
    assert [s["resumed_at"] for s in starts] == [[0, 1], [0, 3]]
    assert sp.best_epoch == summary["best_epoch"]


def test_segmenter_logs_its_rounds_and_a_killed_round_is_superseded(phantom_root, tmp_path):
    from core.training.segmentation import SegConfig, semi_supervised

    seg = SegConfig(size=64, epochs=2, steps_per_round=2, per_round=8, max_rounds=2, sources=("semiseg",), ignore_band=(0.2, 0.8),
                    labelled_share=0.75, polish_epochs=1, tta=False)
    log = ProgressLog.of_run(tmp_path)
    out = tmp_path / "infnet"
    with pytest.raises(Killed):
        semi_supervised(phantom_root, out, seg, progress=False, log=lambda m: None,
                        report=KillAfter(log.stage("infnet", "segmenter"), 2, 1))
    killed = RunProgress.read(tmp_path).stage("infnet")
    assert [r["part_name"] for r in killed.rows][-1] == "round 2"
    semi_supervised(phantom_root, out, seg, progress=False, log=lambda m: None, report=log.stage("infnet", "segmenter"))
    sp = RunProgress.read(tmp_path).stage("infnet")
    assert sp.state == DONE and sp.parts == ["round 0", "round 1", "round 2", "polish"]
    assert [(r["part"], r["epoch"]) for r in sp.rows] == sorted({(r["part"], r["epoch"]) for r in sp.rows})
    assert [r["part_name"] for r in sp.rows] == ["round 0", "round 0", "round 1", "round 2", "polish"]
    assert sp.images_done == sp.planned_images
    assert [r["slices"] for r in sp.rows] == [8, 8, 16, 18, 8]  # 8 labelled + 8 per round (10 in the pool)


# ---- the run's state ---------------------------------------------------------------------------------

def test_run_state_follows_the_latest_attempt(tmp_path):
    me, gone = os.getpid(), dead_pid()
    base = [{"event": "plan", "t": 0, "pid": gone, "stages": [{"stage": "global", "kind": "image", "epochs": 2}]},
            {"event": "stage_start", "t": 1, "pid": gone, "stage": "global", "epochs": 2}]
    assert fold(base).state == STOPPED  # its process is gone without a word
    assert fold([{"event": "launch", "t": 0, "pid": me}]).state == STARTING
    live = fold([*base, {"event": "launch", "t": 5, "pid": me}, {"event": "plan", "t": 6, "pid": me}])
    assert live.state == TRAINING and live.started == 5 and live.pid == me
    failed = fold([*base, {"event": "failed", "t": 2, "error": "DataError: no slices"}])
    assert (failed.state, failed.error) == (FAILED, "DataError: no slices")
    assert fold([*base, {"event": "exit", "t": 2, "returncode": -15, "stopped": True}]).state == STOPPED
    assert fold([*base, {"event": "exit", "t": 2, "returncode": 2}]).state == FAILED
    assert fold([*base, {"event": "done", "t": 3}, {"event": "exit", "t": 4, "returncode": 0}]).state == FINISHED
    again = fold([*base, {"event": "done", "t": 3}, {"event": "plan", "t": 9, "pid": me}])
    assert again.state == TRAINING  # a new attempt on a finished run
    (tmp_path / PROGRESS_FILE).write_text("\n".join(json.dumps(e) for e in base) + "\n")
    rp = RunProgress.read(tmp_path)
    assert rp.stage("global").state == HALTED and rp.current.stage == "global"


# ---- ETA arithmetic on a made-up log ------------------------------------------------------------------

def made_up_log(pid: int) -> list[dict]:
    """global: 10 epochs at most, patience 3, 100 images an epoch; 4 epochs done (10, 10, 12, 14 s), best at 2.
    heatmap: 5 epochs of 50 images, no patience; then two heads (vector) never run. The plan came at t=0 and
    global started at t=10: a 10 s gap."""
    plan = {"event": "plan", "t": 0.0, "pid": pid, "stages": [
        {"stage": "global", "kind": "image", "epochs": 10, "patience": 3, "images_per_epoch": 100},
        {"stage": "heatmap", "kind": "image", "epochs": 5, "images_per_epoch": 50},
        {"stage": "global+heatmap", "kind": "vector", "epochs": 60, "patience": 15, "images_per_epoch": 100},
        {"stage": "fusion", "kind": "vector", "epochs": 60, "patience": 15, "images_per_epoch": 100}]}
    start = {"event": "stage_start", "t": 10.0, "pid": pid, "stage": "global", "kind": "image", "epochs": 10,
             "patience": 3, "images_per_epoch": 100, "resumed_at": [0, 1]}
    rows = [{"event": "epoch", "t": t, "stage": "global", "part": 0, "epoch": e, "seconds": s, "images": 100,
             "train_loss": 0.5, "val_auc": auc, "best_epoch": b, "patience_left": b + 3 - e}
            for e, t, s, auc, b in ((1, 20, 10, .6, 1), (2, 30, 10, .7, 2), (3, 42, 12, .65, 2), (4, 56, 14, .68, 2))]
    return [plan, start, *rows]


def test_eta_of_the_stage_and_of_the_run():
    rp = fold(made_up_log(os.getpid()))
    for sp in rp.stages.values():  # what RunProgress.read sets
        sp.state = RUNNING if sp.started is not None else WAITING
    g = rp.stage("global")
    assert g.patience_left == 1
    measured = rates(rp)
    assert measured == {"image": pytest.approx(46 / 400)}
    # 6 epochs left x the mean of the last 3 (12 s); patience may end it after 1: "at most"
    left = stage_left(g, measured)
    assert (left.seconds, left.at_most, left.rough) == (pytest.approx(72.0), True, False)
    assert left.text() == "at most 1 min"
    # 5 s into epoch 5: that much of it is done
    assert stage_left(g, measured, now=61.0).seconds == pytest.approx(67.0)
    assert stage_left(g, measured, now=500.0).seconds == pytest.approx(60.0)  # never more than one epoch
    # heatmap: 5 x 50 images at global's 0.115 s per image; no patience: not "at most"
    cost = stage_cost(rp.stage("heatmap"), measured)
    assert (cost.seconds, cost.at_most) == (pytest.approx(28.75), False)
    assert mean_gap(rp) == pytest.approx(10.0)
    eta = run_eta(rp)
    assert eta.left_out == ["global+heatmap", "fusion"]  # no vector stage has run: not estimated
    assert eta.ends["heatmap"].seconds == pytest.approx(72 + 10 + 28.75)
    assert eta.total.seconds == pytest.approx(72 + 10 + 28.75 + 10)  # + the work after the last stage
    assert eta.total.partial and eta.total.at_most and eta.ends["global"].text() == "at most 1 min"
    assert eta.ends["fusion"].partial


def test_eta_borrows_another_kind_and_counts_the_segmenter_in_slices():
    pid = os.getpid()
    events = [{"event": "plan", "t": 0, "pid": pid, "stages": [
                  {"stage": "infnet", "kind": "segmenter", "planned_images": 1000},
                  {"stage": "global", "kind": "image", "epochs": 4, "patience": 2, "images_per_epoch": 100}]},
              {"event": "stage_start", "t": 0, "pid": pid, "stage": "infnet", "kind": "segmenter", "planned_images": 1000},
              *[{"event": "epoch", "t": 10 * k, "stage": "infnet", "part": 0, "epoch": k, "seconds": 10, "images": 50}
                for k in (1, 2, 3, 4)]]
    rp = fold(events)
    for sp in rp.stages.values():
        sp.state = RUNNING if sp.started is not None else WAITING
    seg, g = rp.stage("infnet"), rp.stage("global")
    left = stage_left(seg, rates(rp))
    assert (left.seconds, left.at_most) == (pytest.approx(800 * 0.2), False)  # 800 slices to see at 0.2 s each
    cost = stage_cost(g, rates(rp))
    assert (cost.seconds, cost.rough, cost.at_most) == (pytest.approx(400 * 0.2), True, True)
    assert cost.text() == "at most ~1 min"


def test_estimate_texts():
    assert duration(42) == "42 s" and duration(720) == "12 min" and duration(3900) == "1 h 05 min"
    assert Estimate(720, at_most=True).text() == "at most 12 min"
    assert Estimate(300, partial=True).text() == "at least 5 min"
    assert Estimate(300, rough=True).text() == "~5 min"
    assert Estimate(None).text() == "unknown" and Estimate(0.0, partial=True).text() == "unknown"
    assert (Estimate(60) + Estimate(None)).partial and (Estimate(60) + Estimate(30, at_most=True)).seconds == 90
    assert replace(Estimate(60), seconds=None).clock() == ""


def test_malformed_events_are_counted_not_fatal(tmp_path):
    (tmp_path / PROGRESS_FILE).write_text('{"event": "epoch"}\n[1, 2]\n{"event": "epoch", "stage": "g", "epoch": "3"}\n'
                                          '{"event": "plan", "t": 1, "stages": [{"stage": "global", "epochs": 3}]}\n')
    events, damaged = read_events(tmp_path / PROGRESS_FILE)
    assert damaged == 3 and [e["event"] for e in events] == ["plan"]
    rp = RunProgress.read(tmp_path)
    assert rp.damaged == 3 and list(rp.stages) == ["global"] and rp.stage("global").state == WAITING
