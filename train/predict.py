"""Run a trained pipeline on new slices; prints one JSON object per file (JSON Lines).

    python -m train predict --run runs/lite0 slice1.png scan.dcm volume.nii.gz
    python -m train predict --run runs/lite0 --tau 0.6 --slice 40 volume.nii.gz

A file that cannot be read gets {"file": ..., "error": ...}; the others are still answered, and the
exit code is 1 when any file failed.
"""
from __future__ import annotations

import json

from core.data.imaging import ImageReadError, read_slice
from core.errors import UsageError
from core.inference import TrainedRun

from .common import pick_device


def add_args(p):
    p.add_argument("--run", required=True, help="a run folder trained by `python -m train pipeline`")
    p.add_argument("files", nargs="+", help="PNG/JPEG/DICOM/NIfTI slices")
    p.add_argument("--tau", type=float, default=None, help="Eq. 2 threshold (default: the run's)")
    p.add_argument("--slice", type=int, default=None, help="axial slice of NIfTI volumes (default: the middle)")
    p.add_argument("--device", default="auto")


def run(args) -> int:
    if args.tau is not None and not 0 <= args.tau <= 1:
        raise UsageError(f"--tau must lie in [0, 1], got {args.tau}")
    tr = TrainedRun.load(args.run, device=pick_device(args.device))
    failed = 0
    for f in args.files:
        try:
            a = tr.analyse(read_slice(f, args.slice), args.tau)
            print(json.dumps({"file": f, **a.to_json()}), flush=True)
        except ImageReadError as exc:
            failed += 1
            print(json.dumps({"file": f, "error": str(exc)}), flush=True)
    return 1 if failed else 0
