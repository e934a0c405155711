"""Shortcut audit of a trained run (core/audits/shortcut.py): lungs blanked, lungs only, external slices, localisation.

    python -m train shortcut --run runs/lite0 --data-root ../shared/data          # JSON on stdout
    python -m train shortcut --run runs/lite0 --data-root ../shared/data --limit 20   # a quick look
    python -m train shortcut --run runs/g --data-root ../shared/data --external-split train   # choose variants

A run with every stage is scored through its whole pipeline; a run with the global branch only
(`python -m train global`) through that branch. Writes RUN/shortcut.json (the whole result) and
RUN/shortcut.csv (one row per branch); with --external-split train, shortcut-train.{json,csv}.
`train pipeline` runs it too, at this command's default sizes (core/after_training.py).
"""
from __future__ import annotations

import json

from core.audits.shortcut import write_audit
from core.explain.fidelity import TOLERANCE_PX
from core.runs.runfolder import RunFolder

from .common import pick_device


def add_args(p):
    p.add_argument("--run", required=True, help="a run folder trained by `python -m train pipeline`")
    p.add_argument("--data-root", required=True, help="folder holding covid-ct/ and semiseg/ (e.g. ../shared/data)")
    p.add_argument("--limit", type=int, default=None,
                   help="only the first N COVID-CT test slices of each class and N external slices (a quick look)")
    p.add_argument("--tolerance-px", type=float, default=TOLERANCE_PX, help="pointing-game tolerance in pixels")
    p.add_argument("--external-split", default="test", choices=("test", "train"),
                   help="labelled COVID-SemiSeg slices for (c) and (d): report on test; choose variants on train")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")


def run(args):
    result = write_audit(RunFolder(args.run), args.data_root, pick_device(args.device), limit=args.limit,
                         tolerance_px=args.tolerance_px, progress=not args.no_progress,
                         external_split=args.external_split)
    print(json.dumps(result))
    return 0
