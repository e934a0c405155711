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
from core.knowledge.signs_check import SIGNS_CHECK_FILE, SPLIT, run_check
from core.runs.checkpoint import atomic_write_text
from core.runs.runfolder import RunFolder

from .common import pick_device, run_data_root

COLUMNS = ("sign", "n", "Pearson r", "mean abs. error", "agreement", "mean (segmenter)", "mean (doctors)")


def add_args(p):
    p.add_argument("--run", required=True, help="a run folder trained by `python -m train pipeline`")
    p.add_argument("--data-root", default=None, help="folder holding semiseg/ (default: the one the run was trained on)")
    p.add_argument("--split", choices=("train", "test"), default=SPLIT,
                   help=f"the labelled COVID-SemiSeg slices (default {SPLIT}; train chose the consolidation threshold)")
    p.add_argument("--out", default=None, help=f"write the result here (default RUN/{SIGNS_CHECK_FILE})")
    p.add_argument("--device", default="auto")


def table(result: dict) -> str:
    """The check as Markdown: one row per sign, then what was not measurable and the note on the split."""
    from core.results.tables import markdown_table

    from .report import fmt

    names = result.get("names", {})
    rows = [[names.get(k, k), fmt(v["n"]), fmt(v["r"]), fmt(v["mae"]), fmt(v.get("agreement")),
             fmt(v["mean_segmenter"]), fmt(v["mean_doctors"])] for k, v in result["signs"].items()]
    lines = [f"COVID-SemiSeg {result['split']} slices: {result['n_slices']} ({result['n_multiclass']} with a multi-class "
             f"mask); each sign from the run's segmenter against the doctors' mask, on {result['grid']} grid in the "
             "run's frame and lung field. The consolidation share's doctors' value is their GT-2 share of the lesion.",
             "", markdown_table(list(COLUMNS), rows)]
    lines += ["", *(f"Not measurable: {names.get(k, k)}: {why}." for k, why in result["not_measurable"].items()),
              f"Note: {result['note']}."]
    return "\n".join(lines)


def summary(result: dict) -> dict:
    """What the command prints: the result without its per-slice rows."""
    return {k: v for k, v in clean(result).items() if k != "rows"}


def run(args) -> int:
    folder = RunFolder(args.run)
    root = run_data_root(folder, args.data_root)
    progress = lambda i, n: print(f"\rsigns of {i}/{n} slices", end="", file=sys.stderr, flush=True)
    result = run_check(folder, root, args.split, pick_device(args.device), progress)
    print(file=sys.stderr)
    out = Path(args.out) if args.out else folder.path / SIGNS_CHECK_FILE
    atomic_write_text(out, json.dumps(clean(result), indent=1))
    print(f"wrote {out}", file=sys.stderr)
    print(json.dumps(summary(result), indent=1))
    return 0
