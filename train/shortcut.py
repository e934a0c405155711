"""Shortcut audit of a trained run (core/audits/shortcut.py): lungs blanked, lungs only, external slices, localisation.

    python -m train shortcut --run runs/lite0 --data-root ../shared/data          # JSON on stdout
    python -m train shortcut --run runs/lite0 --data-root ../shared/data --limit 20   # a quick look
    python -m train shortcut --run runs/g --data-root ../shared/data --external-split train   # choose variants

A run with every stage is scored through its whole pipeline; a run with the global branch only
(`python -m train global`) through that branch. Writes RUN/shortcut.json (the whole result) and
RUN/shortcut.csv (one row per branch); with --external-split train, shortcut-train.{json,csv}.
"""
from __future__ import annotations

import io
import json

import pandas as pd

from core.audits.shortcut import AUDIT_FILE, AUDIT_TABLE, GlobalScorer, RunScorer, audit, summary_rows
from core.explain.fidelity import TOLERANCE_PX, clean
from core.inference import TrainedRun
from core.runs.checkpoint import atomic_write_bytes, atomic_write_text
from core.runs.runfolder import RunError, RunFolder

from .common import pick_device


def add_args(p):
    p.add_argument("--run", required=True, help="a run folder trained by `python -m train pipeline`")
    p.add_argument("--data-root", required=True, help="folder holding covid-ct/ and semiseg/ (e.g. ../shared/data)")
    p.add_argument("--limit", type=int, default=None, help="only the first N slices of each set (a quick look)")
    p.add_argument("--tolerance-px", type=float, default=TOLERANCE_PX, help="pointing-game tolerance in pixels")
    p.add_argument("--external-split", default="test", choices=("test", "train"),
                   help="labelled COVID-SemiSeg slices for (c) and (d): report on test; choose variants on train")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")


def run(args):
    run_folder = RunFolder(args.run)
    device = pick_device(args.device)
    if (run_folder.stage("fusion") / "best.pt").exists():
        scorer = RunScorer(TrainedRun.load(run_folder.path, device=device))
    elif (run_folder.stage("global") / "best.pt").exists():
        scorer = GlobalScorer(run_folder, device=device)
    else:
        raise RunError(f"{run_folder.path}: no trained global branch to audit")
    result = clean(audit(run_folder, args.data_root, scorer, limit=args.limit, tolerance_px=args.tolerance_px,
                         progress=not args.no_progress, external_split=args.external_split))
    stem = AUDIT_FILE.removesuffix(".json")
    name = stem if args.external_split == "test" else f"{stem}-{args.external_split}"
    atomic_write_text(run_folder.path / f"{name}.json", json.dumps(result, indent=1))
    buf = io.StringIO()
    pd.DataFrame(summary_rows(result)).to_csv(buf, index=False)
    atomic_write_bytes(run_folder.path / (AUDIT_TABLE if name == stem else f"{name}.csv"), buf.getvalue().encode())
    print(json.dumps(result))
    return 0
