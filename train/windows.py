"""Does the decision's record on another hospital hold in another lung window? (core/audits/windows.py)

    python -m train windows --run runs/lite0 --data-root ../shared/data

COVID-CT-MD's reported patients (P002, normal002, cap002), DICOM in Hounsfield units, shown through the product's
lung window and the lung presets of core.audits.windows.WINDOWS, scored through the whole run: per window, the
infected slices against the normal patient's and against the pneumonia patient's, AUC with 95% intervals for every
branch. Writes RUN/windows.json and RUN/windows.csv, prints one JSON object. `train pipeline` runs it too
(core/after_training.py).
"""
from __future__ import annotations

import json

from core.audits.windows import write_windows
from core.runs.runfolder import RunFolder

from .common import pick_device


def add_args(p):
    p.add_argument("--run", required=True, help="a run folder trained by `python -m train pipeline`")
    p.add_argument("--data-root", required=True, help="folder holding covid-ct-md/ (e.g. ../shared/data)")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")


def run(args):
    result = write_windows(RunFolder(args.run), args.data_root, pick_device(args.device),
                           progress=not args.no_progress)
    print(json.dumps(result))
    return 0
