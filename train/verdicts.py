"""Reviewers' verdicts (saved on the dashboard's Case and Margin pages) as CSV.

    python -m train verdicts --runs runs [--run NAME] [--csv OUT] [--history]

One row per run and slice: the verdict in force (`--history`: every saved verdict). Near-duplicate
pairs of RUNS/audit.json (`python -m train audit --data-root DIR --out runs/audit.json`) are flagged
'label looks wrong' first, as the dashboard does (core/runs/verdicts.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

from core.runs.checkpoint import atomic_write_text, check_writable
from core.runs.run_view import list_runs
from core.runs.runfolder import RunFolder, read_table, safe_child
from core.runs.verdicts import VerdictStore, VerdictStoreError


def add_args(p):
    p.add_argument("--runs", default="runs", help="the runs folder (holds verdicts.sqlite)")
    p.add_argument("--run", default=None, help="only this run (default: every run)")
    p.add_argument("--csv", default=None, help="write the CSV here (default: standard output)")
    p.add_argument("--history", action="store_true", help="every saved verdict, not only the one in force")


def run(args) -> int:
    if args.csv:
        check_writable(args.csv)  # before the audit's flags are saved
    runs = Path(args.runs)
    if not runs.is_dir():
        raise VerdictStoreError(f"{runs}: no such runs folder")
    store = VerdictStore.in_runs(runs)
    for name in [args.run] if args.run else list_runs(runs):
        folder = RunFolder(safe_child(runs, name))  # a name that is no run: RunError, exit 2
        predictions = folder.path / "predictions.csv"
        keys = set(read_table(predictions, usecols=["key"]).key) if predictions.is_file() else set()
        store.preflag_from_audit(runs, name, keys)
    text = store.export_csv(args.run, history=args.history)
    if args.csv:
        atomic_write_text(args.csv, text)
    else:
        sys.stdout.write(text)
    return 0
