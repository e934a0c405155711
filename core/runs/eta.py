"""How long a run's training has left, from its progress log (core.runs.progress).

The stage training now: its epochs left times the mean seconds of its last RECENT epochs. With early
stopping (patience) that is an upper bound, said "at most": the stage stops as soon as `patience_left`
epochs bring no better validation AUC. The segmenter (no validation split, no early stopping) counts in
slices: the slices it has still to see (its planned slices minus those seen) times the recent seconds
per slice. The epoch under way counts as partly done (the time since the last row, up to one epoch).

Stages not started yet are estimated from what has run:

* seconds per training image of the stages of the same kind that have run (all their epochs; an epoch's
  seconds include its validation pass), times the stage's planned images (epochs x images per epoch;
  the segmenter: its planned slices). A stage with patience is an upper bound ("at most");
* an "image" stage (a backbone on slices or crops) with none of its kind run yet borrows the
  segmenter's rate, and the segmenter an image stage's (an encoder of the same family on pictures of
  about the same size): said "rough" (~);
* a stage after training ("analysis": audits, precompute) costs its planned images (core/after_training.py
  counts them) at an image stage's rate: rough (~);
* a "vector" stage (one layer on cached vectors: the heads) is estimated only from another vector
  stage; until one has run it is left out and named, and the run's ETA is a lower bound ("at least");
* the work between stages (features, crops and lesion maps cached for the next stage; the fusion CAM
  at the end) is the mean gap seen so far between a stage's end (or the plan) and the next stage's
  start, once per stage to come and once at the end; while no gap has been seen it is not counted.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from core.runs.progress import DONE, FINISHED, WAITING, RunProgress, StageProgress

RECENT = 3  # epochs whose times predict the next ones
BORROW = {"image": "segmenter", "segmenter": "image", "analysis": "image"}  # whose rate a kind not measured yet takes


@dataclass(frozen=True)
class Estimate:
    seconds: float | None  # None: not estimated
    at_most: bool = False  # early stopping may end it sooner
    rough: bool = False  # from another kind of stage's rate
    partial: bool = False  # stages left out: a lower bound

    def __add__(self, other: Estimate) -> Estimate:
        known = [e.seconds for e in (self, other) if e.seconds is not None]
        return Estimate(sum(known) if known else None, self.at_most or other.at_most, self.rough or other.rough,
                        self.partial or other.partial or self.seconds is None or other.seconds is None)

    def text(self) -> str:
        """'at most 12 min', 'at least 5 min', '~3 min', 'unknown'."""
        if self.seconds is None or (self.partial and not self.seconds):
            return "unknown"
        if self.partial and not self.at_most:
            prefix = "at least "
        elif self.at_most and not self.partial:
            prefix = "at most ~" if self.rough else "at most "
        else:
            prefix = "~"
        return prefix + duration(self.seconds)

    def clock(self, now: float | None = None) -> str:
        """The wall-clock time it points at (HH:MM), '' when not estimated."""
        if self.seconds is None:
            return ""
        return time.strftime("%H:%M", time.localtime((now or time.time()) + self.seconds))


ZERO = Estimate(0.0)


def duration(seconds: float) -> str:
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{round(s / 60)} min"
    return f"{s // 3600} h {round((s % 3600) / 60):02d} min"


def _rate(rows: list[dict]) -> float | None:
    """Seconds per training image of these epoch rows, None without both numbers."""
    rows = [r for r in rows if r.get("images") and r.get("seconds") is not None]
    images = sum(r["images"] for r in rows)
    return sum(r["seconds"] for r in rows) / images if images else None


def rates(rp: RunProgress) -> dict[str, float]:
    """Seconds per training image of each kind of stage that has run."""
    out = {}
    for kind in {s.kind for s in rp.stages.values()}:
        rate = _rate([r for s in rp.stages.values() if s.kind == kind for r in s.rows])
        if rate is not None:
            out[kind] = rate
    return out


def _kind_rate(kind: str, measured: dict[str, float]) -> tuple[float | None, bool]:
    """(seconds per image, borrowed from another kind)."""
    if kind in measured:
        return measured[kind], False
    if BORROW.get(kind) in measured:
        return measured[BORROW[kind]], True
    return None, False


def _planned_images(sp: StageProgress) -> int | None:
    if sp.kind == "segmenter" or sp.epochs is None:
        return sp.planned_images
    return sp.epochs * sp.images_per_epoch if sp.images_per_epoch else None


def stage_cost(sp: StageProgress, measured: dict[str, float]) -> Estimate:
    """The whole of a stage not started yet."""
    images = _planned_images(sp)
    rate, rough = _kind_rate(sp.kind, measured)
    if images is None or rate is None:
        return Estimate(None)
    return Estimate(images * rate, at_most=bool(sp.patience) and sp.kind != "segmenter", rough=rough)


def stage_left(sp: StageProgress, measured: dict[str, float], now: float | None = None) -> Estimate:
    """What a started stage has left; `now` (a live run): the epoch under way counts as partly done."""
    if sp.state == DONE:
        return ZERO
    if sp.state == WAITING:
        return stage_cost(sp, measured)
    recent = sp.rows[-RECENT:]
    rough = False
    if sp.kind == "segmenter" or sp.epochs is None:
        if sp.planned_images is None:
            return Estimate(None)
        rate = _rate(recent)
        if rate is None:
            rate, rough = _kind_rate(sp.kind, measured)
        if rate is None:
            return Estimate(None)
        left = max(0, sp.planned_images - sp.images_done) * rate
        per_epoch = _mean([r.get("seconds") for r in recent])
        at_most = False
    else:
        epochs_left = max(0, sp.epochs - sp.epochs_done)
        per_epoch = _mean([r.get("seconds") for r in recent])
        if per_epoch is None:
            rate, rough = _kind_rate(sp.kind, measured)
            if rate is None or not sp.images_per_epoch:
                return Estimate(None)
            per_epoch = rate * sp.images_per_epoch
        left = epochs_left * per_epoch
        patience_left = sp.patience_left if sp.rows else sp.patience
        at_most = bool(sp.patience) and patience_left is not None and patience_left < epochs_left
    since = sp.last.get("t") if sp.last else sp.started
    if now is not None and since is not None and per_epoch:
        left = max(0.0, left - min(now - since, per_epoch))
    return Estimate(left, at_most=at_most, rough=rough)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def mean_gap(rp: RunProgress) -> float | None:
    """Mean seconds between a stage's end (or the plan) and the next stage's start, in one attempt."""
    gaps, since = [], None
    for ev in rp.events:
        kind = ev["event"]
        if kind in ("plan", "stage_end"):
            since = ev.get("t")
        elif kind == "stage_start":
            if since is not None and ev.get("t") is not None and ev["t"] >= since:
                gaps.append(ev["t"] - since)
            since = None
        elif kind in ("launch", "exit", "failed"):
            since = None
    return _mean(gaps)


@dataclass
class RunEta:
    total: Estimate  # until the run ends
    ends: dict[str, Estimate] = field(default_factory=dict)  # until each stage not done ends
    left_out: list[str] = field(default_factory=list)  # stages not estimated
    live: bool = False  # from now (a run training); else the training time a stopped run has left


def run_eta(rp: RunProgress, now: float | None = None) -> RunEta:
    """The ETA of every stage not done and of the run (the module docstring says how). `now`: count the
    epoch under way as partly done (a live run); None for a stopped one (what resuming would take)."""
    if rp.state == FINISHED:
        return RunEta(ZERO)
    measured = rates(rp)
    gap = mean_gap(rp)
    between = Estimate(gap) if gap is not None else ZERO
    out, total = RunEta(ZERO, live=now is not None), ZERO
    for sp in rp.stages.values():
        if sp.state == DONE:
            continue
        if sp.state == WAITING:
            own = stage_cost(sp, measured)
            own = own if own.seconds is None else between + own
        else:
            own = stage_left(sp, measured, now)
        if own.seconds is None:
            out.left_out.append(sp.stage)
        total = total + own
        out.ends[sp.stage] = total
    out.total = total + between
    return out
