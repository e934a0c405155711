"""Run a trained pipeline on new slices and DICOM series; prints one JSON object per slice, and one per series
after its slices (JSON Lines).

    python -m train predict --run runs/lite0 slice1.png scan.dcm volume.nii.gz
    python -m train predict --run runs/lite0 --tau 0.6 --slice 40 volume.nii.gz
    python -m train predict --run runs/lite0 series_folder/ study.zip IM0001.dcm IM0002.dcm
    python -m train predict --run runs/lite0 --windows IM0001.dcm   # also its call in other lung windows

A folder or a .zip is read as DICOM series, and so are loose DICOM files that share a SeriesInstanceUID and a
multi-frame (Enhanced CT) file (core/data/series.py): every slice of each series is answered in body order, with its
file, the series' UID, its index in the volume and its position (mm). Any other file is one slice, as before (a
NIfTI volume: its middle slice, or --slice). Every slice's line carries its "decision": the decision branch's call
at its operating point, its prediction set, whether it is unlike the run's training slices and whether its lungs can
be read at all (black in a soft-tissue window: core/knowledge/lung_window.py) (core/trust/calls.py). After a series'
slices, one line {"series_uid": ..., "scan": {...}}: the scan's call by the scan rule, its opacity per lung and how
far the call can be trusted. A series that is not axial (a coronal or sagittal reformat, a scout) gets one line
{"series_uid": ..., "plane": ..., "error": ...} and no slice of it is scored; a lone DICOM slice that is not axial
is not scored either. A file that cannot be read gets {"file": ..., "error": ...}; the others are still answered,
and the exit code is 1 when any file failed. What is wrong with a series as a whole (a gap, a second series beside
the first) is a `warning:` line on standard error. With --windows, a lone slice's line also carries "windows": the
decision's p(COVID) and call with the slice shown, from its HU, in each lung window of core.audits.windows, and
"windows_call_holds"; both null for a file without HU (an 8-bit or colour image, a DICOM picture of a slice). DICOM
CT, NIfTI and 16-bit PNG or TIFF slices of CT numbers hold HU.
"""
from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path

from core.audits.windows import slice_in_windows
from core.data.imaging import ImageReadError, read_bytes
from core.data.series import Volume, group_inputs, read_axial_slice, read_series
from core.errors import UsageError
from core.inference import TrainedRun
from core.knowledge.scan import score_volume
from core.trust.calls import RunCalls
from core.trust.ood import COLUMNS, FLAG_COLUMN

from .common import pick_device


def add_args(p):
    p.add_argument("--run", required=True, help="a run folder trained by `python -m train pipeline`")
    p.add_argument("files", nargs="+", help="PNG/JPEG/DICOM/NIfTI slices, DICOM series folders or .zip archives")
    p.add_argument("--tau", type=float, default=None, help="Eq. 2 threshold (default: the run's)")
    p.add_argument("--slice", type=int, default=None, help="axial slice of NIfTI volumes (default: the middle)")
    p.add_argument("--windows", action="store_true",
                   help="a lone slice that holds CT numbers (DICOM CT, NIfTI, a 16-bit PNG/TIFF of them) also shown "
                        "in the other lung windows of `train windows`: its call in each")
    p.add_argument("--device", default="auto")


def _slice(tr: TrainedRun, tau: float | None, calls: RunCalls, read, where: dict, extra=None) -> bool:
    """Print one slice's analysis and call (and `extra()`'s fields), or its error; True when it failed."""
    try:
        img = read()
        a = tr.analyse(img, tau)
        flagged = None if calls.flag_columns is None else calls.flag_columns(tr, a, img)
        more = {} if extra is None else extra()
    except ImageReadError as exc:
        print(json.dumps({**where, "error": str(exc)}), flush=True)
        return True
    print(json.dumps({**where, **a.to_json(), "decision": calls.of_slice(a.probs, flagged, a.lungs_black), **more}),
          flush=True)
    return False


def _windows(tr: TrainedRun, calls: RunCalls, path: Path, frame: int | None) -> dict:
    """--windows: the slice's call in each lung window (core.audits.windows), or null without HU."""
    found = slice_in_windows(tr, read_bytes(path), str(path), calls.branch, calls.threshold, frame)
    if found is None:
        return {"windows": None, "windows_call_holds": None}
    return {"windows": [{"window": c.window, "p": round(c.p, 6), "call": "COVID" if c.covid else "non-COVID"}
                        for c in found], "windows_call_holds": len({c.covid for c in found}) == 1}


class _AtTau:
    """The run analysing at --tau, as core.knowledge.scan.score_volume asks a run."""

    def __init__(self, tr: TrainedRun, tau: float | None):
        self.tr, self.tau = tr, tau

    def analyse(self, img):
        return self.tr.analyse(img, self.tau)

    def fusion_vector(self, a):
        return self.tr.fusion_vector(a)


def _series(tr: TrainedRun, tau: float | None, calls: RunCalls, vol: Volume) -> int:
    if not vol.axial:  # a coronal or sagittal reformat, a scout: one line, no slice scored
        print(json.dumps({"series_uid": vol.series_uid, "slices": len(vol), "plane": vol.plane,
                          "error": vol.not_axial()}), flush=True)
        return 1
    for line in vol.notes + vol.problems:
        print(f"warning: {line}", file=sys.stderr, flush=True)
    failed = 0
    for e in vol.left_out:
        print(json.dumps({"file": e.name, "series_uid": vol.series_uid, "error": str(e)}), flush=True)
        failed += 1

    def answer(i: int, a, row: dict) -> None:
        nonlocal failed
        s = vol.slices[i]
        where = {"file": s.name, "series_uid": vol.series_uid, "index": i, "slices": len(vol),
                 "position_mm": None if s.position is None else round(s.position, 4), "instance": s.instance,
                 "ordering": vol.ordering}
        if a is None:
            print(json.dumps({**where, "error": row["problem"]}), flush=True)
            failed += 1
            return
        flagged = {c: row[c] for c in COLUMNS} if FLAG_COLUMN in row else None
        print(json.dumps({**where, **a.to_json(), "decision": calls.of_slice(a.probs, flagged, a.lungs_black)}),
              flush=True)

    table = score_volume(_AtTau(tr, tau), vol, extra=calls.flag_columns, on_slice=answer)
    print(json.dumps({"series_uid": vol.series_uid, "scan": calls.of_scan(table)}), flush=True)
    return failed


def run(args) -> int:
    if args.tau is not None and not 0 <= args.tau <= 1:
        raise UsageError(f"--tau must lie in [0, 1], got {args.tau}")
    tr = TrainedRun.load(args.run, device=pick_device(args.device))
    calls = RunCalls(args.run)
    for part, why in (("prediction sets", calls.no_sets), ("out-of-distribution flag", calls.no_flag)):
        if why:
            print(f"warning: no {part} for {args.run}: {why}", file=sys.stderr, flush=True)
    failed = 0
    for kind, paths in group_inputs(args.files):
        if kind == "slice":
            f = str(paths[0])  # as given
            read = lambda f=f: read_axial_slice(read_bytes(Path(f)), str(Path(f)), args.slice)
            extra = partial(_windows, tr, calls, Path(f), args.slice) if args.windows else None
            failed += _slice(tr, args.tau, calls, read, {"file": f}, extra)
            continue
        found = read_series(paths)
        for e in found.rejected:
            print(json.dumps({"file": e.name, "error": str(e)}), flush=True)
            failed += 1
        for vol in found.volumes:
            failed += _series(tr, args.tau, calls, vol)
    return 1 if failed else 0
