"""The words, tables and curves of a run's training progress (core.runs.progress, core.runs.eta), for the
Training page and the pages that wait for a stage. No Streamlit here: plain strings, DataFrames, figures."""
from __future__ import annotations

import time

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.models.network import TITLES
from core.runs.eta import RunEta, duration, run_eta
from core.runs.progress import (
    DONE,
    FAILED,
    FINISHED,
    HALTED,
    OUTPUT,
    RUNNING,
    STARTING,
    TRAINING,
    WAITING,
    RunProgress,
    StageProgress,
)

STAGE_NAMES = {**TITLES, "joint": "the joint branches"}  # every stage's title (core.models.network's, and GHI-F's)
RESUME = "`make demo` (or `python -m train pipeline ... --resume`) resumes it"


def clock(t: float | None) -> str:
    return time.strftime("%H:%M", time.localtime(t)) if t else "?"


def eta_of(rp: RunProgress, now: float | None = None) -> RunEta:
    """The run's ETA; a live run counts the epoch under way as partly done."""
    now = time.time() if now is None else now
    return run_eta(rp, now if rp.live else None)


def epochs_text(sp: StageProgress) -> str:
    """'4 of at most 30', 'round 2 of 5 (round 0, ...) · 1,200 of 4,000 slices', '22 (stopped early, of 60)'."""
    if sp.kind == "analysis":  # a stage after training has no epochs
        return ""
    if sp.kind == "segmenter":
        part = sp.last.get("part_name") if sp.last else None
        seen = f"{sp.images_done:,} of {sp.planned_images:,} slices" if sp.planned_images else f"{sp.images_done:,} slices"
        return " · ".join(p for p in (part, seen) if p)
    if sp.state == DONE:
        early = sp.end and sp.end.get("early_stopped")
        return f"{sp.epochs_done}" + (f" (stopped early, of {sp.epochs})" if early else "")
    if sp.epochs is None:
        return str(sp.epochs_done)
    return f"{sp.epochs_done} of {'at most ' if sp.patience else ''}{sp.epochs}"


def patience_text(sp: StageProgress, short: bool = False) -> str:
    """The early-stopping state: how many more epochs without a better validation AUC stop the stage."""
    if sp.kind == "analysis":
        return ""
    if sp.kind == "segmenter":
        return "none (no validation split)"
    if not sp.patience:
        return "none: runs every epoch"
    if sp.state == WAITING:
        return f"patience {sp.patience}"
    if sp.state == DONE:
        return "stopped early" if sp.end and sp.end.get("early_stopped") else f"not reached (patience {sp.patience})"
    left = sp.patience_left if sp.rows else sp.patience
    epochs = f"{left} more epoch{'s' if left != 1 else ''}"
    return f"after {epochs}" if short else f"stops after {epochs} without a better val AUC"


def stage_line(sp: StageProgress, eta: RunEta, now: float | None = None) -> str:
    """One sentence on a stage: how far it is and when it is expected to end."""
    name = f"**{sp.stage}** ({STAGE_NAMES.get(sp.stage, 'after training' if sp.kind == 'analysis' else sp.kind)})"
    if sp.kind == "analysis" and sp.state == DONE:  # a stage after training: no epochs
        error = sp.end.get("error") if sp.end else None
        return f"{name} failed: {error} (the run's log.txt)." if error else f"{name} is done."
    if sp.state == DONE:
        if sp.kind == "segmenter":
            return f"{name} is trained ({epochs_text(sp)})."
        best = f", best val AUC {sp.best_val_auc:.3f} at epoch {sp.best_epoch}" if sp.best_val_auc is not None else ""
        return f"{name} is trained ({epochs_text(sp)} epochs{best})."
    end = eta.ends.get(sp.stage)
    if end is None or sp.stage in eta.left_out:
        expected = "when it ends cannot be estimated until a stage of its kind has run"
    elif eta.live:
        expected = f"expected to end in {end.text()}" + (f" (about {end.clock(now)})" if end.seconds else "")
    else:
        expected = f"{end.text()} of training until it ends, once the training resumes"
    if sp.state == RUNNING:
        best = f" · best val AUC {sp.best_val_auc:.3f} (epoch {sp.best_epoch})" if sp.best_val_auc is not None else ""
        stop = f" · {patience_text(sp)}" if sp.patience and sp.rows else ""
        epochs = epochs_text(sp) or "starting"
        if sp.kind == "analysis":
            return f"{name} is running; {expected}."
        return f"{name} is training: epoch {epochs}{best}{stop}; {expected}." if sp.kind != "segmenter" \
            else f"{name} is training: {epochs}; {expected}."
    if sp.state == HALTED:
        return f"{name} stopped during training ({epochs_text(sp)}); {RESUME}."
    return f"{name} has not started; {expected}."


def run_line(rp: RunProgress, eta: RunEta, now: float | None = None) -> str:
    """One sentence on the run: its state, since when, and when it should end."""
    now = time.time() if now is None else now
    known = eta.total.text() != "unknown"
    left_out = f" Not counted yet: {', '.join(eta.left_out)} (no stage of their kind has run)." \
        if eta.left_out and known else ""
    ends = f"the run ends in **{eta.total.text()}** (about {eta.total.clock(now)})" if known else \
        "when the run ends can be estimated once its first stage has run an epoch"
    if rp.state == STARTING:
        return (f"Training started at {clock(rp.started)}: reading the data and finding the lung field of every "
                "slice before the first stage.")
    if rp.state == TRAINING:
        cur = rp.current
        if cur is not None:
            now_doing = f"now **{cur.stage}**"
        elif any(s.state == DONE for s in rp.stages.values()):
            now_doing = "between stages (caching features for the next one)"
        else:
            now_doing = "preparing the first stage's inputs"
        since = duration(now - rp.started) if rp.started else "?"
        return f"Training since {clock(rp.started)} ({since}), {now_doing}; {ends}.{left_out}"
    if rp.state == FINISHED:
        if not rp.has_log:
            return "Trained before the progress log existed: read from its stage folders (summary.json)."
        # the stages' own epochs (the table below), not the last call's time: a resumed run's last call may have
        # run the stages after training alone
        trained = sum(sp.seconds for sp in rp.stages.values())
        took = next((ev.get("seconds") for ev in reversed(rp.events) if ev["event"] == "done"), None)
        return (f"Finished at {clock(rp.finished)}" + (f"; its stages trained for {duration(trained)} in all" if trained
                                                       else "")
                + (f"; the last call of the pipeline took {duration(took)}" if took else "") + ".")
    if rp.state == FAILED:
        return f"The training failed: {rp.error}."
    cur = rp.current
    where = f" during **{cur.stage}**" if cur else ""
    left = f" What is left would take {eta.total.text()}.{left_out}" if known else ""
    return f"The training stopped{where} (no training process); {RESUME}.{left}"


def stage_table(rp: RunProgress, eta: RunEta) -> pd.DataFrame:
    rows = []
    for sp in rp.stages.values():
        last = sp.last or {}
        end = eta.ends.get(sp.stage)
        rows.append({"stage": sp.stage, "state": sp.state,
                     "epochs": epochs_text(sp) if sp.rows or sp.state != WAITING else
                     (f"at most {sp.epochs}" if sp.patience else str(sp.epochs or "")),
                     "best epoch": sp.best_epoch, "best val AUC": sp.best_val_auc,
                     "early stop": patience_text(sp, short=True),
                     "img/s": last.get("img_per_s"), "time": duration(sp.seconds) if sp.rows else "",
                     "ends in": "" if sp.state == DONE or end is None else
                     "not estimated yet" if sp.stage in eta.left_out else end.text()})
    table = pd.DataFrame(rows, columns=["stage", "state", "epochs", "best epoch", "best val AUC", "early stop", "img/s",
                                        "time", "ends in"])
    return table.astype({"best epoch": "Int64", "best val AUC": "float64", "img/s": "float64"})


def epoch_table(sp: StageProgress) -> pd.DataFrame:
    cols = ["part", "epoch", "slices", "train loss", "img/s", "seconds", "at"] if sp.kind == "segmenter" else \
        ["epoch", "train loss", "val loss", "val AUC", "val acc", "best epoch", "patience left", "img/s", "seconds", "at"]
    rows = [{"part": r.get("part_name"), "epoch": r["epoch"], "slices": r.get("slices"),
             "train loss": r.get("train_loss"), "val loss": r.get("val_loss"), "val AUC": r.get("val_auc"),
             "val acc": r.get("val_acc"), "best epoch": r.get("best_epoch"), "patience left": r.get("patience_left"),
             "img/s": r.get("img_per_s"), "seconds": r.get("seconds"), "at": clock(r.get("t")) if r.get("t") else ""}
            for r in sp.rows]
    return pd.DataFrame(rows, columns=cols)


def _x(sp: StageProgress) -> tuple[list[int], list[str]]:
    """Epoch numbers along the x axis (the segmenter's parts one after another) and their hover labels."""
    if sp.kind != "segmenter":
        return [r["epoch"] for r in sp.rows], [f"epoch {r['epoch']}" for r in sp.rows]
    return list(range(1, len(sp.rows) + 1)), [f"{r.get('part_name')} · epoch {r['epoch']}" for r in sp.rows]


def curves(stage: str, by_run: dict[str, StageProgress], colours) -> go.Figure:
    """Loss (training solid, validation dashed), validation AUC (the best epoch starred) and images per
    second per epoch of one stage, one colour per run."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=("loss", "validation AUC", "images per second"),
                        horizontal_spacing=0.07)
    for i, (run, sp) in enumerate(by_run.items()):
        colour = colours[i % len(colours)]
        x, label = _x(sp)
        rows = sp.rows
        fig.add_scatter(x=x, y=[r.get("train_loss") for r in rows], mode="lines+markers", name=f"{run} · training loss",
                        line={"color": colour}, text=label, legendgroup=run, showlegend=True, row=1, col=1)
        if sp.kind != "segmenter":
            fig.add_scatter(x=x, y=[r.get("val_loss") for r in rows], mode="lines+markers",
                            name=f"{run} · validation loss", line={"color": colour, "dash": "dash"}, text=label,
                            legendgroup=run, row=1, col=1)
            fig.add_scatter(x=x, y=[r.get("val_auc") for r in rows], mode="lines+markers", name=f"{run} · val AUC",
                            line={"color": colour}, text=label, legendgroup=run, showlegend=False, row=1, col=2)
            if sp.best_epoch:
                best = next((r for r in rows if r["epoch"] == sp.best_epoch), None)
                if best is not None:
                    fig.add_scatter(x=[best["epoch"]], y=[best.get("val_auc")], mode="markers",
                                    marker={"symbol": "star", "size": 15, "color": colour, "line": {"color": "black", "width": 1}},
                                    name=f"{run} · best epoch {best['epoch']}", legendgroup=run, row=1, col=2)
        fig.add_scatter(x=x, y=[r.get("img_per_s") for r in rows], mode="lines+markers", name=f"{run} · img/s",
                        line={"color": colour, "dash": "dot"}, text=label, legendgroup=run, showlegend=False, row=1, col=3)
    if all(sp.kind == "segmenter" for sp in by_run.values()):
        middle = sum(fig.layout.xaxis2.domain) / 2  # paper coordinates: the middle chart's centre
        fig.add_annotation(text="no validation split:<br>Algorithm 1 logs its loss only", xref="paper", yref="paper",
                           x=middle, y=0.5, showarrow=False)
    axis = "epoch across the rounds" if any(sp.kind == "segmenter" for sp in by_run.values()) else "epoch"
    n = max(len(sp.rows) for sp in by_run.values())
    for c in (1, 2, 3):  # whole epochs only, about ten ticks
        fig.update_xaxes(title_text=axis, tick0=1, dtick=max(1, round(n / 10)), row=1, col=c)
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    fig.update_layout(height=330, margin={"l": 0, "r": 0, "t": 40, "b": 0}, legend={"orientation": "h", "y": -0.3},
                      title=None)
    return fig


def output_tail(run_path, lines: int = 30) -> str | None:
    """The end of the training's output (RUN/train.out, written by `make demo`), or None."""
    try:
        text = (run_path / OUTPUT).read_text(errors="replace")
    except OSError:
        return None
    return "\n".join(text.splitlines()[-lines:])

