"""A run's progress log, `runs/<name>/progress.jsonl`: one JSON object per line, appended while the run trains.

Every stage writes it in one format (the training loop, Algorithm 1's rounds, the pipeline around them),
so the dashboard's Training page, the pages waiting for a stage and the ETA (core.runs.eta) read one file.
Each event has "event" and "t" (Unix time), and of these fields the ones that have a value:

    launch       pid, host, command          the demo launcher started the training (train/background.py)
    plan         pid, host, stages           the pipeline's stages, in training order (core.training.plan)
    stage_start  pid, host, stage, kind, epochs, patience, images_per_epoch, planned_images, parts, resumed_at
    epoch        stage, part, part_name, epoch, train_loss, val_auc, val_loss, val_acc, images, seconds,
                 img_per_s, best_epoch, best_val_auc, patience_left, slices
    stage_end    stage, best_epoch, best_val_auc, epochs_run, early_stopped
    done         seconds                     the pipeline finished
    failed       error                       the pipeline raised
    exit         returncode, stopped         the launcher saw the training process end (stopped: it stopped it)

Kinds of stage: "segmenter" (Algorithm 1: loss only, no validation split; its parts are round 0, the
pseudo-label rounds and the polish), "image" (a backbone on slices or crops), "vector" (one layer on
cached vectors), "analysis" (a stage after training, core/after_training.py: no epochs; planned_images is
its cost in training images of an image stage; a stage_end with `error` names why it failed). An epoch is
placed by (part, epoch); a stage_start's `resumed_at` is the place its attempt starts from. A row is written when its epoch ends, before that epoch's checkpoint, so a killed
process leaves no checkpointed epoch unlogged; the rows an earlier attempt wrote at or after `resumed_at`
(work it never checkpointed: Algorithm 1 checkpoints once a round) are superseded.

A run trained before this log existed, or a stage it reused without training, is read from its stage
folders (summary.json, the segmenter's train/*/summary.json; source "files"), with the same fields.
"""
from __future__ import annotations

import json
import math
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

PROGRESS_FILE = "progress.jsonl"
OUTPUT = "train.out"  # the output of a training started in the background (train/background.py)
KINDS = ("segmenter", "image", "vector", "analysis")
# run states
STARTING, TRAINING, FINISHED, FAILED, STOPPED = "starting", "training", "finished", "failed", "stopped"
# stage states
WAITING, RUNNING, DONE, HALTED = "waiting", "training", "done", "stopped"
PLANNED = ("kind", "epochs", "patience", "images_per_epoch", "planned_images")  # what plan and stage_start say of a stage


def _clean(value):
    """JSON has no NaN: a NaN metric (a split with one class) is written as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _auc(value: float | None) -> float | None:
    """A best validation AUC; the loop's -1 (none yet) is None."""
    return None if value is None or value < 0 else value


def patience_left(best_epoch: int, epoch: int, patience: int | None, epochs: int | None) -> int | None:
    """Epochs without a better validation AUC the training loop still runs after `epoch` (1-based, as
    `best_epoch`) before early stopping ends the stage, at most the epochs left; None without patience."""
    if not patience or not best_epoch:
        return None
    left = max(0, best_epoch + patience - epoch)
    return left if epochs is None else min(left, epochs - epoch)


class ProgressLog:
    """Appends events to one progress file. `ProgressLog(None)` writes nothing (a DDP rank other than 0)."""

    def __init__(self, path: str | Path | None):
        self.path = None if path is None else Path(path)

    @classmethod
    def of_run(cls, run_path: str | Path, enabled: bool = True) -> ProgressLog:
        return cls(Path(run_path) / PROGRESS_FILE if enabled else None)

    def write(self, event: str, **fields) -> None:
        if self.path is None:
            return
        fields = {k: _clean(v) for k, v in fields.items()}
        line = json.dumps({"event": event, "t": round(time.time(), 3), **{k: v for k, v in fields.items() if v is not None}})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as f:
            f.seek(0, os.SEEK_END)
            if f.tell():  # a write cut off by a kill leaves no newline: start a fresh line
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")
            f.write(line.encode("utf-8") + b"\n")

    def process_event(self, event: str, pid: int | None = None, **fields) -> None:
        """An event that names the process doing the training (launch, plan, stage_start): a new process
        begins a new attempt (`fold`)."""
        self.write(event, pid=os.getpid() if pid is None else pid, host=socket.gethostname(), **fields)

    def plan(self, stages: list[dict]) -> None:
        self.process_event("plan", stages=stages)

    def done(self, seconds: float) -> None:
        self.write("done", seconds=round(seconds, 1))

    def failed(self, exc: BaseException) -> None:
        self.write("failed", error=f"{type(exc).__name__}: {exc}".splitlines()[0])

    def stage(self, name: str, kind: str) -> StageReport:
        if kind not in KINDS:
            raise ValueError(f"unknown kind of stage {kind!r}; one of {', '.join(KINDS)}")
        return StageReport(self, name, kind)


class StageReport:
    """What one stage's training loop reports: start, one row per epoch, end."""

    def __init__(self, log: ProgressLog, stage: str, kind: str):
        self.log, self.stage, self.kind = log, stage, kind
        self.epochs, self.patience = None, None

    def start(self, *, epochs: int | None = None, patience: int | None = None, images_per_epoch: int | None = None,
              planned_images: int | None = None, parts: list[str] | None = None, resumed_at=(0, 1)) -> None:
        """`resumed_at`: (part, epoch) of the first epoch this attempt trains."""
        self.epochs, self.patience = epochs, (patience or None)
        self.log.process_event("stage_start", stage=self.stage, kind=self.kind, epochs=epochs, patience=self.patience,
                               images_per_epoch=images_per_epoch, planned_images=planned_images, parts=parts,
                               resumed_at=list(resumed_at))

    def epoch(self, row: dict, *, images: int | None = None, best_epoch: int | None = None,
              best_val_auc: float | None = None, part: int = 0, part_name: str = "", slices: int | None = None) -> None:
        """`row`: the loop's own history row (epoch, train_loss or loss, val_*, seconds, img_per_s);
        `best_epoch` (1-based) and the patience give the early-stopping state."""
        self.log.write("epoch", stage=self.stage, part=part, part_name=part_name, epoch=row["epoch"],
                       train_loss=row.get("train_loss", row.get("loss")), val_auc=row.get("val_auc"),
                       val_loss=row.get("val_loss"), val_acc=row.get("val_acc"),
                       images=row.get("images", images), seconds=row.get("seconds"), img_per_s=row.get("img_per_s"),
                       best_epoch=best_epoch, best_val_auc=_auc(best_val_auc),
                       patience_left=patience_left(best_epoch, row["epoch"], self.patience, self.epochs), slices=slices)

    def part_hook(self, part: int, name: str, slices: int):
        """A callback `row -> None` for the epochs of one part of a segmenter's training."""
        return lambda row: self.epoch(row, part=part, part_name=name, slices=slices)

    def end(self, *, best_epoch: int | None = None, best_val_auc: float | None = None,
            epochs_run: int | None = None) -> None:
        stopped_early = self.epochs is not None and epochs_run is not None and epochs_run < self.epochs
        self.log.write("stage_end", stage=self.stage, best_epoch=best_epoch, best_val_auc=_auc(best_val_auc),
                       epochs_run=epochs_run, early_stopped=stopped_early)


# ------------------------------------------------------------------------------------------- reading

def read_events(path: str | Path) -> tuple[list[dict], int]:
    """(events in file order, lines that are no JSON object). A line cut off by a kill is such a line:
    it is counted, so a reader can say so, and the events around it are kept."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return [], 0
    events, damaged = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            damaged += 1
            continue
        if _well_formed(ev):
            events.append(ev)
        else:
            damaged += 1
    return events, damaged


def _well_formed(ev) -> bool:
    """An event the fold can use: a kind, and the stage (and the epoch) those about a stage need."""
    if not isinstance(ev, dict) or not isinstance(ev.get("event"), str):
        return False
    if ev["event"] in ("stage_start", "epoch", "stage_end") and not isinstance(ev.get("stage"), str):
        return False
    return ev["event"] != "epoch" or (isinstance(ev.get("epoch"), int) and isinstance(ev.get("part", 0), int))


@dataclass
class StageProgress:
    stage: str
    kind: str = "image"
    epochs: int | None = None  # planned; with patience, at most
    patience: int | None = None
    images_per_epoch: int | None = None
    planned_images: int | None = None  # the segmenter's slices to see in all its parts
    parts: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)  # epoch events, in training order
    started: float | None = None  # the latest attempt's stage_start
    end: dict | None = None  # the stage_end event
    source: str = "log"  # or "files": read from the stage folder
    state: str = WAITING

    @property
    def done(self) -> bool:
        return self.end is not None

    @property
    def epochs_done(self) -> int:
        return len(self.rows)

    @property
    def images_done(self) -> int:
        return int(sum(r.get("images") or 0 for r in self.rows))

    @property
    def last(self) -> dict | None:
        return self.rows[-1] if self.rows else None

    @property
    def best_epoch(self) -> int | None:
        if self.end and self.end.get("best_epoch"):
            return self.end["best_epoch"]
        return self.last.get("best_epoch") if self.last else None

    @property
    def best_val_auc(self) -> float | None:
        if self.end and self.end.get("best_val_auc") is not None:
            return self.end["best_val_auc"]
        return self.last.get("best_val_auc") if self.last else None

    @property
    def patience_left(self) -> int | None:
        return None if self.done or not self.last else self.last.get("patience_left")

    @property
    def seconds(self) -> float:
        """Training seconds of the epochs kept (validation passes included)."""
        return float(sum(r.get("seconds") or 0.0 for r in self.rows))

    def supersede(self, resumed_at) -> None:
        part, epoch = resumed_at
        self.rows = [r for r in self.rows if (r.get("part", 0), r["epoch"]) < (part, epoch)]


@dataclass
class RunProgress:
    stages: dict[str, StageProgress]  # training order
    state: str
    pid: int | None = None
    host: str | None = None
    started: float | None = None  # the latest attempt's first event
    last_event: float | None = None
    finished: float | None = None
    error: str | None = None
    damaged: int = 0  # lines of the log that could not be read
    has_log: bool = True
    events: list[dict] = field(default_factory=list)

    @property
    def live(self) -> bool:
        return self.state in (STARTING, TRAINING)

    @property
    def current(self) -> StageProgress | None:
        """The stage training now (or, once stopped, the stage that was), else None."""
        return next((s for s in self.stages.values() if s.state in (RUNNING, HALTED)), None)

    def stage(self, name: str) -> StageProgress | None:
        return self.stages.get(name)

    @classmethod
    def read(cls, run_path: str | Path) -> RunProgress:
        """The progress of the run folder at run_path: its log, completed by its stage folders."""
        run_path = Path(run_path)
        events, damaged = read_events(run_path / PROGRESS_FILE)
        rp = fold(events, damaged)
        rp.has_log = bool(events)
        from_files(rp, run_path)
        if not rp.has_log:  # trained before the log: finished when it has predictions
            rp.state = FINISHED if (run_path / "predictions.csv").exists() else STOPPED
        _stage_states(rp)
        return rp


def process_alive(pid: int | None, host: str | None) -> bool:
    """Whether the process that writes the log still runs (assumed so for another machine's)."""
    if not pid:
        return False
    if host and host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (OSError, ValueError, OverflowError):
        return False
    return True


def fold(events: list[dict], damaged: int = 0) -> RunProgress:
    """Replay events into the stages' progress and the run's state (see the module docstring). An attempt
    is one training process: it begins at a launch, or at an event naming another process than the one
    before; the run's state is its latest attempt's."""
    rp = RunProgress({}, STOPPED, damaged=damaged, events=events)
    attempt: list[dict] = []

    def get(name: str) -> StageProgress:
        return rp.stages.setdefault(name, StageProgress(name))

    for ev in events:
        kind, t = ev["event"], ev.get("t")
        rp.last_event = t if t is not None else rp.last_event
        if kind == "launch" or ev.get("pid") not in (None, rp.pid):
            attempt, rp.started = [], t
        if ev.get("pid") is not None:
            rp.pid, rp.host = ev["pid"], ev.get("host")
        attempt.append(ev)
        if kind == "plan":
            for planned in ev.get("stages") or []:
                sp = get(planned["stage"])
                if sp.started is None:  # a stage that has started knows its own numbers
                    for key in PLANNED:
                        setattr(sp, key, planned.get(key, getattr(sp, key)))
        elif kind == "stage_start":
            sp = get(ev["stage"])
            for key in PLANNED:
                setattr(sp, key, ev.get(key, getattr(sp, key)))
            sp.parts = ev.get("parts") or []
            sp.supersede(ev.get("resumed_at") or (0, 1))
            sp.started, sp.end, sp.source = t, None, "log"
        elif kind == "epoch":
            get(ev["stage"]).rows.append(ev)
        elif kind == "stage_end":
            get(ev["stage"]).end = ev
    _run_state(rp, attempt)
    return rp


def _run_state(rp: RunProgress, attempt: list[dict]) -> None:
    kinds = {ev["event"]: ev for ev in attempt}
    if "failed" in kinds:
        rp.state, rp.error = FAILED, kinds["failed"].get("error")
    elif "done" in kinds:
        rp.state, rp.finished = FINISHED, kinds["done"].get("t")
    elif "exit" in kinds:
        ev = kinds["exit"]
        rp.state = STOPPED if ev.get("stopped") or ev.get("returncode") == 0 else FAILED
        if rp.state == FAILED:
            rp.error = f"the training process exited with status {ev.get('returncode')}"
    elif attempt and process_alive(rp.pid, rp.host):
        rp.state = TRAINING if "plan" in kinds or "stage_start" in kinds else STARTING
    else:
        rp.state = STOPPED


def _stage_states(rp: RunProgress) -> None:
    for sp in rp.stages.values():
        if sp.done:
            sp.state = DONE
        elif sp.started is None and not sp.rows:
            sp.state = WAITING
        else:
            sp.state = RUNNING if rp.live else HALTED


# --------------------------------------------------------------------- stages trained before the log

def from_files(rp: RunProgress, run_path: Path) -> None:
    """Add the stages a run folder holds that the log does not show finished: read from their
    summary.json (a segmenter: its parts' summaries), or, a segmenter adopted from elsewhere, done
    without rows. Stages are kept in the log's order, then the run folder's (core.models.network.STAGES)."""
    from core.models.network import SEGMENTER, STAGES, VECTOR_HEADS

    order = [*STAGES, "joint"]
    for name in order:
        folder = run_path / name
        sp = rp.stages.get(name)
        if sp is not None and sp.done:
            continue
        if name == SEGMENTER:
            if not (folder / "best.pt").exists():
                continue
            rows = _segmenter_rows(folder)
            summary = {}
        else:
            try:
                summary = json.loads((folder / "summary.json").read_text())
            except (OSError, ValueError):
                continue
            rows = _stage_rows(name, summary)
        sp = rp.stages.setdefault(name, StageProgress(name))
        sp.kind = "segmenter" if name == SEGMENTER else ("vector" if name in VECTOR_HEADS else "image")
        recipe = summary.get("recipe") if isinstance(summary.get("recipe"), dict) else {}
        sp.epochs = sp.epochs or recipe.get("epochs")
        sp.patience = sp.patience or recipe.get("patience") or None
        sp.rows, sp.source = rows, "files"
        sp.end = {"event": "stage_end", "stage": name, "best_epoch": summary.get("best_epoch"),
                  "best_val_auc": summary.get("best_val_auc"), "epochs_run": summary.get("epochs_run", len(rows)),
                  "t": _mtime(folder / ("summary.json" if summary else "best.pt"))}
    # training order: the latest plan's, then the order stages started in, then the run folder's
    planned = [p["stage"] for ev in rp.events if ev["event"] == "plan" for p in ev.get("stages") or []]
    started = [ev["stage"] for ev in rp.events if ev["event"] == "stage_start"]
    names = [n for n in dict.fromkeys([*planned, *started, *order, *rp.stages]) if n in rp.stages]
    rp.stages = {n: rp.stages[n] for n in names}


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _stage_rows(name: str, summary: dict) -> list[dict]:
    """A classifier stage's summary.json history as epoch rows (best epoch and patience replayed as the loop keeps them)."""
    recipe = summary.get("recipe") if isinstance(summary.get("recipe"), dict) else {}
    patience, epochs = recipe.get("patience") or None, recipe.get("epochs")
    rows, best, best_auc = [], 0, None
    for h in summary.get("history") or []:
        auc = h.get("val_auc")
        if best == 0 or (auc is not None and not (isinstance(auc, float) and math.isnan(auc))
                         and (best_auc is None or auc > best_auc)):
            best, best_auc = h["epoch"], auc
        left = patience_left(best, h["epoch"], patience, epochs)
        rows.append({"event": "epoch", "stage": name, "part": 0, "part_name": "", "epoch": h["epoch"],
                     "train_loss": h.get("train_loss"), "val_auc": _clean(auc), "val_loss": h.get("val_loss"),
                     "val_acc": h.get("val_acc"), "seconds": h.get("seconds"), "img_per_s": h.get("img_per_s"),
                     "images": _images(h), "best_epoch": best, "best_val_auc": _clean(best_auc), "patience_left": left})
    return rows


def _images(h: dict):
    if h.get("images") is not None:
        return h["images"]
    if h.get("img_per_s") and h.get("seconds"):
        return round(h["img_per_s"] * h["seconds"])
    return None


def _segmenter_rows(folder: Path) -> list[dict]:
    """Rows of infnet/train/<part>/summary.json (round-000, round-001 ..., polish), in training order."""
    parts = sorted((folder / "train").glob("round-*")) + [folder / "train" / "polish"]
    rows = []
    for part in parts:
        try:
            summary = json.loads((part / "summary.json").read_text())
        except (OSError, ValueError):
            continue
        index = len(parts) - 1 if part.name == "polish" else int(part.name.split("-")[1])
        name = "polish" if part.name == "polish" else f"round {index}"
        for h in summary.get("history") or []:
            rows.append({"event": "epoch", "stage": "infnet", "part": index, "part_name": name, "epoch": h["epoch"],
                         "train_loss": h.get("loss"), "seconds": h.get("seconds"), "img_per_s": h.get("img_per_s"),
                         "images": _images(h), "slices": summary.get("n_train")})
    return rows
