"""Does the decision's record on another hospital hold when its slices arrive in another lung window?

Hospitals export slices windowed by their viewer's lung preset, not by this product's. COVID-CT-MD's reported
patients (core.audits.external's REPORTS role: P002, normal002, cap002) are DICOM in Hounsfield units, so each of
their slices can be shown through the product's lung window and through other lung windows viewers use
(`WINDOWS`), scored through the whole trained run (its decision and every branch) and compared as `train external`
compares them: the COVID-19 patient's infected slices against the normal patient's slices, and against the
pneumonia patient's; and per patient the scan's call by core.knowledge.scan's RULE at each branch's operating point.
Nothing is chosen on it; it says how far the record depends on the window.

    result = write_windows(run, data_root)     # RUN/windows.json (per window and comparison) and windows.csv
    calls = slice_in_windows(tr, data, name, "two-step", 0.61)   # one uploaded slice: its call in every window

A data root whose COVID-CT-MD slices hold no CT numbers (a data pack keeps them windowed, core/data/pack.py)
cannot be shown in another window: windows.json then says so, and why.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from core.audits import external as ex
from core.data.imaging import LUNG_WINDOW, read_bytes, slice_hu, sniff_format, window
from core.explain.fidelity import clean
from core.inference import TrainedRun
from core.knowledge.scan import RULE
from core.results.metrics import binary_metrics
from core.results.predictions import operating_point, read_predictions
from core.runs.checkpoint import atomic_write_text

WINDOWS_FILE, ROWS_FILE = "windows.json", "windows.csv"
# (level, width) in HU: the product's lung window first, then lung presets viewers ship, narrower and wider.
WINDOWS = (LUNG_WINDOW, (-600.0, 1200.0), (-700.0, 1000.0), (-550.0, 1600.0), (-500.0, 2000.0))
BASELINE = "lesion-share"


def window_name(level: float, width: float) -> str:
    return f"L{level:g}/W{width:g}"


def reported_slices(data_root) -> list[ex.ExternalSlice]:
    """COVID-CT-MD's reported patients' slices (external.ROLES)."""
    return [s for s in ex.external_slices(data_root) if s.source == "covid-ct-md" and s.role == ex.REPORTS]


def no_ct_numbers(slices: list[ex.ExternalSlice]) -> str:
    """Why these slices cannot be shown in another window ("" when every one is DICOM)."""
    for s in slices:
        with open(s.path, "rb") as f:
            head = f.read(512)  # enough for DICOM's preamble and magic
        if sniff_format(head, s.path) != "dicom":
            return (f"{s.path} holds no CT numbers (not DICOM: a data pack keeps COVID-CT-MD windowed); "
                    "run on the raw data root")
    return ""


def score(tr: TrainedRun, slices: list[ex.ExternalSlice], progress: bool = False) -> pd.DataFrame:
    """One row per slice and window: the slice (its patient, its radiologists' mark) and every branch's p(COVID)."""
    rows = []
    for s in tqdm(slices, desc="windows: COVID-CT-MD reported patients", disable=not progress):
        hu = slice_hu(read_bytes(Path(s.path)), s.path)
        if hu is None:
            raise ValueError(f"{s.path}: a picture of a slice, no CT numbers to show in another window")
        for (level, width), a in _shown(tr, hu):
            rows.append({"key": s.key, "group": s.group, "label": s.label, "infection_visible": s.infection_visible,
                         "lung_found": bool(a.lung_found), "window": window_name(level, width), "level": level,
                         "width": width,
                         **{f"p_{b}": float(p) for b, p in a.probs.items()}})
    return pd.DataFrame(rows)


def _shown(tr: TrainedRun, hu: np.ndarray):
    """((level, width), the run's analysis of the slice shown in that window) for every window of WINDOWS."""
    return [(w, tr.analyse(window(hu, *w))) for w in WINDOWS]


def report(rows: pd.DataFrame, branches: list[str], thresholds: dict[str, float]) -> dict:
    """Per window (the product's first), comparison and branch: AUC with its 95% interval; per patient and branch
    the scan statistic of RULE and whether its call at the branch's operating point (`thresholds`) is right."""
    covid, normal, cap = ex.ctmd.REPORT
    infected = (rows.group == covid) & (rows.infection_visible == 1)
    against = {"normal": rows.group == normal, "pneumonia": rows.group == cap}
    out = []
    for (level, width) in WINDOWS:
        here = (rows.level == level) & (rows.width == width)
        entry = {"window": window_name(level, width), "level": level, "width": width,
                 "product": (level, width) == LUNG_WINDOW, "comparisons": {}}
        for name, other in against.items():
            pos, neg = rows[here & infected], rows[here & other]
            if pos.empty or neg.empty:
                continue
            y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
            entry["comparisons"][name] = {
                "n_pos": len(pos), "n_neg": len(neg), "vs": f"{covid} infected vs {normal if name == 'normal' else cap}",
                "branches": {b: _auc(y, np.r_[pos[f"p_{b}"], neg[f"p_{b}"]]) for b in branches}}
        entry["patients"] = {patient: _scan_calls(part.assign(index=np.arange(len(part))), branches, thresholds)
                             for patient, part in rows[here].groupby("group", sort=False)}
        out.append(entry)
    return {"windows": out, "branches": branches, "thresholds": thresholds, "rule": RULE.name}


def _scan_calls(table: pd.DataFrame, branches: list[str], thresholds: dict[str, float]) -> dict:
    stats = {b: RULE.statistic(table, b) for b in branches}
    label = int(table.label.iloc[0])
    return {"label": label, "scan_statistic": stats,
            "right": {b: None if math.isnan(v) else bool((v >= thresholds[b]) == bool(label)) for b, v in stats.items()}}


def scan_calls_right(result: dict | None, branch: str) -> list[tuple[str, int, int]]:
    """Per window of a windows.json: (its name, the scan calls `branch` got right, the patients called)."""
    out = []
    for w in (result or {}).get("windows", []):
        calls = [p["right"].get(branch) for p in w.get("patients", {}).values()]
        calls = [c for c in calls if c is not None]
        if calls:
            out.append((w["window"], sum(calls), len(calls)))
    return out


def _auc(y: np.ndarray, p: np.ndarray) -> dict:
    m = binary_metrics(y, p, threshold=0.5, n_boot=ex.N_BOOT)["auc"]
    return {"auc": m["value"], "auc_ci": m["ci"]}


def write_windows(run, data_root, device="cpu", progress: bool = False) -> dict:
    """Score the reported COVID-CT-MD patients in every window of WINDOWS through the run; write WINDOWS_FILE (and
    ROWS_FILE); a data root without CT numbers gets a WINDOWS_FILE that says why."""
    slices = reported_slices(data_root)
    why = no_ct_numbers(slices)
    if why:
        result = {"unavailable": why}
    else:
        tr = TrainedRun.load(run.path, device=device)
        rows = score(tr, slices, progress)
        branches = [c[len("p_"):] for c in rows.columns if c.startswith("p_")]
        preds = read_predictions(run)
        result = report(rows, branches, {b: operating_point(preds, b, run) for b in branches})
        result["decision"] = tr.cfg.decision
        atomic_write_text(run.path / ROWS_FILE, rows.to_csv(index=False))
    atomic_write_text(run.path / WINDOWS_FILE, json.dumps(clean(result), indent=1))
    return result


def other_windows(result: dict | None) -> int:
    """How many windows besides the product's a windows.json measured (0: none, or not measured)."""
    return sum(not w["product"] for w in (result or {}).get("windows", []))


def spread(result: dict, branch: str, against: str) -> tuple[float, float, float] | None:
    """(the product's window's AUC, the lowest and the highest in the other windows) of `branch` against `against`
    ("normal" or "pneumonia"); None when not measured."""
    product, others = math.nan, []
    for w in (result or {}).get("windows", []):
        m = w["comparisons"].get(against, {}).get("branches", {}).get(branch)
        if m is None:
            continue
        if w["product"]:
            product = m["auc"]
        else:
            others.append(m["auc"])
    return None if math.isnan(product) or not others else (product, min(others), max(others))


@dataclass(frozen=True)
class WindowCall:
    window: str
    product: bool  # the product's own lung window
    p: float  # the decision's p(COVID) with the slice shown in this window
    covid: bool  # its call at the operating point


def slice_in_windows(tr: TrainedRun, data: bytes, name: str, branch: str, threshold: float,
                     frame: int | None = None) -> list[WindowCall] | None:
    """One slice file shown in every window of WINDOWS and scored through the run: `branch`'s p(COVID) and its
    call at `threshold` in each; None for a file without CT numbers (core.data.imaging.slice_hu: an 8-bit or colour
    image, a DICOM picture of a slice). `frame`: a multi-frame DICOM's frame or a NIfTI volume's axial slice."""
    hu = slice_hu(data, name, frame)
    return None if hu is None else calls_in_windows(tr, hu, branch, threshold)


def calls_in_windows(tr: TrainedRun, hu: np.ndarray, branch: str, threshold: float) -> list[WindowCall]:
    """A slice in Hounsfield units (core.data.imaging.slice_hu) shown in every window of WINDOWS: `branch`'s p(COVID)
    and its call at `threshold` in each."""
    calls = []
    for w, a in _shown(tr, hu):
        p = float(a.probs[branch])
        calls.append(WindowCall(window_name(*w), w == LUNG_WINDOW, p, p >= threshold))
    return calls


def calls_text(calls: list[WindowCall], branch: str) -> str:
    """'Shown in the 5 lung windows, **two-step**'s p(COVID) runs from 0.549 to 0.842: the call (COVID in the
    product's window) changes in 1 of 5: ...', or '...: the call, COVID, is the same in every one.'"""
    ps = [c.p for c in calls]
    own = next(c for c in calls if c.product)
    same = sum(c.covid == own.covid for c in calls)
    said = "COVID" if own.covid else "non-COVID"
    head = f"Shown in the {len(calls)} lung windows, **{branch}**'s p(COVID) runs from {min(ps):.3f} to {max(ps):.3f}"
    if same == len(calls):
        return f"{head}: the call, {said}, is the same in every one."
    return (f"{head}: the call ({said} in the product's window) changes in {len(calls) - same} of {len(calls)}: "
            "it rests on how the slice is shown, so read it as uncertain.")


def calls_table(calls: list[WindowCall]) -> pd.DataFrame:
    """One row per window: its name (the product's marked), p(COVID), the call."""
    return pd.DataFrame([{"lung window": c.window + (" (the product's)" if c.product else ""), "p(COVID)": round(c.p, 3),
                          "call": "COVID" if c.covid else "non-COVID"} for c in calls])
