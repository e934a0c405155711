"""Does the decision carry over to other hospitals? (core/audits/external.py)

    python -m train external --run runs/lite0 --data-root ../shared/data            # JSON summary on stdout
    python -m train external --run runs/lite0 --data-root ../shared/data --no-fit   # keep the decision as fitted

Scores COVID-SemiSeg's labelled slices and every COVID-CT-MD slice through the run, fits the run's two-step
decision (core/knowledge/decision.py) on the rows that choose (COVID-CT val, COVID-SemiSeg train, COVID-CT-MD
P001/normal001/cap001), and writes RUN/external.json (per comparison and branch: AUC with a 95% interval,
sensitivity and specificity at each branch's operating point; per COVID-CT-MD patient the scan-level score)
and RUN/external.csv (the scored rows). `train pipeline` runs it as a stage when its recipe decides in two steps.
"""
from __future__ import annotations

import json
import sys

from core.audits.external import run_external, table_rows
from core.runs.runfolder import RunFolder

from .common import pick_device, run_data_root


def add_args(p):
    p.add_argument("--run", required=True, help="a run folder trained by `python -m train pipeline`")
    p.add_argument("--data-root", default=None, help="folder holding covid-ct/, semiseg/ and covid-ct-md/ "
                                                    "(default: the one the run was trained on)")
    p.add_argument("--no-fit", action="store_true", help="score and report only; keep the two-step decision as it is")
    p.add_argument("--device", default="auto")


def run(args):
    folder = RunFolder(args.run)
    root = run_data_root(folder, args.data_root)
    progress = lambda i, n: print(f"\rscored {i}/{n} external slices", end="", file=sys.stderr, flush=True)
    result = run_external(folder, root, fit=not args.no_fit, progress=progress,
                          log=lambda m: print(m, file=sys.stderr), device=pick_device(args.device))
    print(file=sys.stderr)
    print(json.dumps({"run": str(folder.path), "rows": table_rows(result)}))
    return 0
