"""What a gpu-run writes into --out, rewritten after every job: the tables, plan.json, timings.json,
utilisation.csv and summary.md; and the rule for which of a run's files come back (no checkpoints)."""
from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import asdict
from pathlib import Path

from .state import State

SMALL_SUFFIXES = (".json", ".csv", ".txt", ".md")
SMALL_LIMIT = 2 << 20  # bytes: a file larger than this stays behind

_write_lock = threading.RLock()  # the budget guard's thread may write while a job finishes


def copy_small(src: Path, dst: Path, limit: int = SMALL_LIMIT) -> None:
    """The files worth bringing back (configs, logs, summaries, predictions, metrics): no checkpoints."""
    for p in src.rglob("*"):
        if p.is_file() and p.suffix in SMALL_SUFFIXES and p.stat().st_size <= limit \
                and "features" not in p.relative_to(src).parts:
            target = dst / p.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, target)


def audit_line(audit: dict) -> str:
    """The fusion branch's shortcut figures in one line (the run's shortcut.json holds them all)."""
    f = audit["branches"]["fusion"]
    ext, point = f["external"], audit.get("localisation", {}).get("fusion", {})
    num = lambda v: f"{v:.3f}" if isinstance(v, (int, float)) else "n/a"  # None: undefined on these slices
    return (f"fusion AUC {num(f['intact']['auc'])}, lungs blanked {num(f['lungs-blanked']['auc'])}, external "
            f"sensitivity {num(ext['sensitivity'])} @ spec {num(ext['covidct_test_specificity']['value'])}, "
            f"mean p {num(ext['mean_p'])}, pointing {num(point.get('pointing'))}")


def write_outputs(s: State, final: bool = False, guard: str = "") -> None:
    """Tables, plan, timings, utilisation and summary.md from what has finished so far."""
    from core.runs.checkpoint import atomic_write_text

    from ..reproduce import write_tables

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
        atomic_write_text(out / "summary.md", summary_md(s, t12=t12, t3=t3, util=util, used=used, final=final,
                                                         guard=guard))


def summary_md(s: State, t12, t3, util: dict, used: float, final: bool, guard: str) -> str:
    """summary.md: the budget, the tables, the plan with every job's fate, the timings and utilisation."""
    from ..reproduce import markdown

    a = s.args
    lines = [f"# gpu-run on {s.device_name}", "",
             f"Budget {a.budget_min:g} min, used {used / 60:.1f} min"
             + (" (finished)" if final else " (still running)" if not guard else "") + ".",
             f"Pack: {s.pack.get('summary', '?')}.", ""]
    if guard:
        lines += [(f"**The budget guard ended the run while `{guard}` was running**: the tables hold what had "
                   "finished before it."), ""]
    if s.synthetic:
        lines += ["Synthetic phantoms: not a real-data result.", ""]
    lines += [f"Every run in bf16 autocast with channels-last; slices of Self-Trans and the global branch on "
              f"the {'GPU' if s.device.startswith('cuda') else 'CPU (no GPU here)'}. Self-Trans epochs: "
              + (", ".join(f"{b} {e}" for b, e in s.selfsup_epochs.items()) or "none") + ".", ""]
    lines += ["## Tables 1-2 (test split, G-H-I-F)", "", markdown(t12) if t12 is not None else "(no finished runs)", "",
              "## Table 3 (fusion, test split)", "", markdown(t3) if t3 is not None else "(no finished runs)", ""]
    lines += ["## Plan, in order of importance", "",
              ("Projected after calibration: run/drop if every estimate held. A run whose estimate exceeds the "
               "time left is dropped; later, cheaper runs still run when they fit."), "",
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
    return "\n".join(lines) + "\n"
