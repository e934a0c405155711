"""Run folders as they are while a run trains, made from a finished run (the session's `synthetic_run`): its
progress log cut after a given epoch, with a live training process, and only the stage folders and predictions
of the stages finished by then. What the dashboard sees mid-run, without training anything."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd

from core.runs.progress import PROGRESS_FILE, read_events

# which stage writes each branch's predictions (core.pipeline.run_all)
BRANCH_STAGE = {"global": "global", "heatmap": "heatmap", "lesion-share": "infnet", "global+infected": "infected",
                "global+heatmap": "global+heatmap", "fusion": "fusion"}


def run_in_training(src: Path, dest: Path, stage: str, epoch: int, pid: int | None = None) -> Path:
    """A copy of the finished run `src` cut after `stage`'s epoch `epoch`, trained by process `pid` (default:
    this one, so it counts as alive)."""
    pid = os.getpid() if pid is None else pid
    events, _ = read_events(src / PROGRESS_FILE)
    kept = []
    for ev in events:
        kept.append({**ev, "pid": pid} if "pid" in ev else ev)
        if ev["event"] == "epoch" and ev["stage"] == stage and ev["epoch"] == epoch:
            break
    else:
        raise ValueError(f"{src}: no epoch {epoch} of {stage} in its progress log")
    done = {ev["stage"] for ev in kept if ev["event"] == "stage_end"}
    dest.mkdir(parents=True)
    config = json.loads((src / "config.json").read_text())
    config.pop("timings", None)  # written when the pipeline ends
    (dest / "config.json").write_text(json.dumps(config, indent=1))
    (dest / PROGRESS_FILE).write_text("".join(json.dumps(ev) + "\n" for ev in kept))
    for name in done:
        shutil.copytree(src / name, dest / name)
    branches = [b for b, s in BRANCH_STAGE.items() if s in done]
    if branches:
        pred = pd.read_csv(src / "predictions.csv", keep_default_na=False)
        pred[["key", "split", "label", "patient", *[f"p_{b}" for b in branches]]].to_csv(dest / "predictions.csv",
                                                                                           index=False)
    return dest
