"""Evaluate every trained branch of a run on one split: a table on a terminal, one JSON object with
--json or when the output is piped (scripts read that). Either way metrics_<split>.json is saved.

    python -m train evaluate --run runs/lite0 --split test
    python -m train evaluate --run runs/lite0 --split test --json
"""
from __future__ import annotations

import json
import sys

from core.errors import UsageError
from core.results.predictions import evaluate_run, metrics_path
from core.runs.runfolder import RunFolder

from .common import nonnegative_int


def add_args(p):
    p.add_argument("--run", required=True)
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--threshold", default="val",
                   help="'val': each branch's operating point chosen on the validation split (Youden's J); "
                        "or a number, e.g. 0.5")
    p.add_argument("--bootstrap", type=nonnegative_int, default=1000,
                   help="bootstrap resamples for the AUC/F1 intervals")
    p.add_argument("--json", action="store_true", help="one JSON object even on a terminal")


def run(args) -> dict:
    folder = RunFolder(args.run)
    if args.threshold != "val":
        try:
            if not 0 <= float(args.threshold) <= 1:
                raise ValueError
        except ValueError:
            raise UsageError(f"--threshold must be 'val' or a number in [0, 1], got {args.threshold!r}")
    out = evaluate_run(folder, args.split, n_boot=args.bootstrap, threshold=args.threshold)
    if folder.config.get("synthetic"):
        out = {"data": "synthetic phantoms (not a real-data result)", **out}
    print(json.dumps(out) if args.json or not sys.stdout.isatty() else terminal_table(out, folder, args))
    return out


def terminal_table(out: dict, folder: RunFolder, args) -> str:
    """The report's metric table (train/report.py) as aligned plain text."""
    from .report import metric_rows

    header = ["branch", "accuracy", "F1", "AUC [95% CI]", "sensitivity", "specificity", "threshold"]
    rows = [header] + metric_rows({b: m for b, m in out.items() if isinstance(m, dict)})
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    point = "each branch's validation operating point" if args.threshold == "val" else f"threshold {args.threshold}"
    n = next((m["n"] for m in out.values() if isinstance(m, dict)), 0)
    title = f"{folder.path.name}: {args.split} split, {n} slices, {point}" + (f" ({out['data']})" if "data" in out else "")
    saved = metrics_path(folder, args.split, args.threshold)
    return "\n".join([title, "", *lines, "", f"saved: {saved} (--json prints it)"])
