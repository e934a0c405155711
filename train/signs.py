"""The radiological signs against the doctors' masks (core/knowledge/signs_check.py).

    python -m train signs --run runs/lite0 --data-root ../shared/data                 # the 48 test slices
    python -m train signs --run runs/lite0 --split train --out /tmp/signs_train.json

For each labelled COVID-SemiSeg slice of --split, every radiological sign (core/knowledge/signs.py) from the
run's segmenter (as `predict` and the dashboard compute it) against the same sign from the doctors' mask, in
the same frame, grid and lung field; the consolidation share against the doctors' multi-class mask (GT-2
consolidation among their lesion pixels). Per sign: Pearson r, mean absolute error and n (the slices where
both values exist), for bilateral the share of equal calls. The consolidation threshold was chosen on the
train slices: the test split (the default) is the held-out check. Writes RUN/signs_check.json (or --out) and
prints a JSON summary; `train report` shows the table.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from core.explain.fidelity import clean
from core.inference import TrainedRun
from core.knowledge.signs_check import SIGNS_CHECK_FILE, SPLIT, check, labelled_slices, require_segmenter
from core.runs.checkpoint import atomic_write_text
from core.runs.runfolder import RunFolder

from .common import pick_device, run_data_root
from .report import signs_table


def add_args(p):
    p.add_argument("--run", required=True, help="a run folder trained by `python -m train pipeline`")
    p.add_argument("--data-root", default=None, help="folder holding semiseg/ (default: the one the run was trained on)")
    p.add_argument("--split", choices=("train", "test"), default=SPLIT,
                   help=f"the labelled COVID-SemiSeg slices (default {SPLIT}; train chose the consolidation threshold)")
    p.add_argument("--out", default=None, help=f"write the result here (default RUN/{SIGNS_CHECK_FILE})")
    p.add_argument("--device", default="auto")


def summary(result: dict) -> dict:
    """What the command prints: the result without its per-slice rows."""
    return {k: v for k, v in clean(result).items() if k != "rows"}


def run(args) -> int:
    folder = RunFolder(args.run)
    require_segmenter(folder)
    root = run_data_root(folder, args.data_root)
    slices = labelled_slices(root, args.split)
    tr = TrainedRun.load(folder.path, device=pick_device(args.device))
    progress = lambda i, n: print(f"\rsigns of {i}/{n} slices", end="", file=sys.stderr, flush=True)
    result = {"run": str(folder.path), "data_root": str(root), **check(tr, slices, args.split, progress)}
    print(file=sys.stderr)
    print(signs_table(result), file=sys.stderr)
    out = Path(args.out) if args.out else folder.path / SIGNS_CHECK_FILE
    atomic_write_text(out, json.dumps(clean(result), indent=1))
    print(f"wrote {out}", file=sys.stderr)
    print(json.dumps(summary(result), indent=1))
    return 0
