"""Shortcut audit: does a trained run read the disease, or where a slice came from?

For one run, scored live through its own preprocessing (core.inputs.harmonise, the run's `input`):

(a) lungs blanked   COVID-CT test slices with the run's lung field (core.inputs.fields: with its
                    segmenter's lesions for input lungs+lesions; grown as the harmonised input
                    grows it) painted with the slice's mean: only what lies outside the lungs is left.
                    A network that reads the disease cannot tell the classes apart from that (AUC
                    near 0.5).
(b) lungs only      the same slices with everything outside the lung field painted with the mean.
(c) external        the labelled COVID-SemiSeg test slices (every one COVID, from another source
                    than COVID-CT): sensitivity and mean p(COVID) at each branch's operating point
                    (core.results.predictions.operating_point: COVID-CT's validation split; the
                    two-step decision's: the data that choose), beside COVID-CT test specificity
                    at that same point.
(d) localisation    on the same external slices: pointing game (the map's maximum within
                    TOLERANCE_PX of an expert lesion mask) and energy share in the lesions of each
                    decision branch's own map (global: Zhou CAM of its FC weights; fusion: the
                    fusion CAM), beside a uniform map over the slice and one over the lung field.
(e) lungs readable  the intact COVID-CT test AUC on the slices whose lungs can be read, the ones
                    shown in a soft-tissue window left out (core.knowledge.lung_window: lungs
                    black, named in `soft_tissue_window`). COVID-CT's such slices are nearly all
                    non-COVID, so the window alone separates its classes a little; (e) below the
                    intact AUC is what the window gave.

Edited slices keep the lung field found on the intact slice, so an edit never moves the frame.
Slices where no lung field is found cannot be edited: they are left out of (a) and (b) and named.
The lesion-share baseline (no classifier) is measured the same way, as branch `lesion-share`.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from core.config import PipelineConfig
from core.data.covidct import read_covidct
from core.data.imaging import read_slice
from core.data.semiseg import read_labelled
from core.explain.cams import weighted_cam
from core.explain.fidelity import (
    TOLERANCE_PX,
    clean,
    energy_share,
    load_labelled,
    on_slice,
    pointing_hit,
    tolerance_region,
)
from core.inference import TrainedRun, quantise8
from core.inputs.fields import FieldFinder
from core.inputs.harmonise import grown, harmonise
from core.inputs.lungs import LungField
from core.knowledge.lung_window import lungs_black, readable
from core.models import network
from core.results.metrics import binary_metrics, wilson
from core.results.predictions import operating_point, read_predictions
from core.runs.checkpoint import atomic_write_bytes, atomic_write_text, load_checkpoint
from core.runs.runfolder import RunError

CONDITIONS = ("intact", "lungs-blanked", "lungs-only")
AUDIT_FILE = "shortcut.json"  # what `python -m train shortcut` writes into the run folder (test split)
AUDIT_TABLE = "shortcut.csv"  # the same, one row per branch
BASELINE_MAPS = ("uniform", "uniform-in-lungs")  # maps with no knowledge of the slice
LUNGS_READABLE = "lungs-readable"  # (e): the intact scores of the slices not shown in a soft-tissue window


def blank_lungs(img: np.ndarray, field: LungField) -> np.ndarray:
    """The slice with its (grown) lung field painted with the slice's mean."""
    out = img.copy()
    out[grown(field)] = float(img.mean())
    return out


def lungs_only(img: np.ndarray, field: LungField) -> np.ndarray:
    """The slice with everything outside its (grown) lung field painted with the slice's mean."""
    out = img.copy()
    out[~grown(field)] = float(img.mean())
    return out


EDITS = {"intact": lambda img, field: img, "lungs-blanked": blank_lungs, "lungs-only": lungs_only}


@dataclass
class Scored:
    probs: dict  # branch -> p(COVID)
    maps: dict  # branch -> (H, W) map on the original slice (only when asked)


class RunScorer:
    """Scores slices with a whole trained pipeline (core.inference.TrainedRun)."""

    def __init__(self, tr):
        self.tr = tr
        self.fields = tr.fields  # the run's own lung fields (its input mode's)

    def __call__(self, img: np.ndarray, field: LungField, want_maps: bool = False) -> Scored:
        a = self.tr.analyse(img, field=field)
        maps = {}
        if want_maps:
            h, w = img.shape
            g = self.tr.m["global"]
            with torch.no_grad():
                fmap = g.backbone.features(a.inputs["image"])
                cam = weighted_cam(fmap, g.fc.weight[0])[0].float().cpu()
            maps["global"] = on_slice(cam, a.frame, h, w)
            maps["fusion"] = on_slice(self.tr.fusion_cam(a, size=self.tr.cfg.image_size), a.frame, h, w)
        return Scored(dict(a.probs), maps)


class GlobalScorer:
    """Scores slices with the global branch alone (a run trained by `python -m train global`)."""

    def __init__(self, run, device="cpu"):
        self.cfg = PipelineConfig.of_run(run)
        self.device = torch.device(device)
        self.model = network.build(self.cfg, init="scratch", only=("global",))["global"]
        self.model.load_state_dict(load_checkpoint(run.stage("global") / "best.pt")["model"])
        self.model.eval().to(self.device)
        self.fields = FieldFinder.of_run(run, self.cfg, device)

    @torch.no_grad()
    def __call__(self, img: np.ndarray, field: LungField, want_maps: bool = False) -> Scored:
        h = harmonise(img, self.cfg.input, self.cfg.image_size, field)
        x = torch.from_numpy(quantise8(h.image))[None, None].to(self.device)
        fmap = self.model.backbone.features(x)
        p = float(torch.sigmoid(self.model.fc(self.model.backbone.pool(fmap)))[0])
        maps = {"global": on_slice(weighted_cam(fmap, self.model.fc.weight[0])[0].cpu(), h.box, *img.shape)} \
            if want_maps else {}
        return Scored({"global": p}, maps)


def _auc_row(y, p) -> dict:
    m = binary_metrics(y, p, n_boot=500)
    return {"auc": m["auc"]["value"], "auc_ci": m["auc"]["ci"]}


def first_of_each_class(slices: list, limit: int | None) -> list:
    """The first `limit` slices of each label (all with None): a shortened set keeps both classes, so its
    AUCs stay defined (COVID-CT lists every COVID slice of a split before its non-COVID ones)."""
    if limit is None:
        return slices
    seen: dict[int, int] = {}
    out = []
    for s in slices:
        seen[s.label] = seen.get(s.label, 0) + 1
        if seen[s.label] <= limit:
            out.append(s)
    return out


def audit(run, data_root, scorer, limit: int | None = None, tolerance_px: float = TOLERANCE_PX,
          progress: bool = True, external_split: str = "test") -> dict:
    """The five measurements of the module docstring, as one JSON-ready dict. `external_split`
    "train": COVID-SemiSeg's 50 labelled training slices instead (the classifier never trains on
    them, so variants can be chosen on them and reported on the 48 test slices)."""
    from tqdm import tqdm

    preds = read_predictions(run)
    test = first_of_each_class([s for s in read_covidct(data_root) if s.split == "test"], limit)
    external = read_labelled(data_root, external_split)[:limit]
    scores = {c: [] for c in CONDITIONS}
    labels, skipped, stored_gap, soft, readable_lungs = [], [], {}, [], []
    by_key = preds.set_index("key")
    for s in tqdm(test, desc="shortcut: COVID-CT test", disable=not progress):
        img = read_slice(s.path)
        field = scorer.fields(img)
        if not field.found:
            skipped.append(s.key)
            continue
        labels.append(s.label)
        readable_lungs.append(readable(lungs_black(img, field)))
        if not readable_lungs[-1]:
            soft.append(s.key)
        for c in CONDITIONS:
            scores[c].append(scorer(EDITS[c](img, field), field).probs)
        for b, p in scores["intact"][-1].items():  # live scoring must match what the run stored
            col = f"p_{b}"
            if s.key in by_key.index and col in by_key and by_key.at[s.key, col] != "":
                stored_gap[b] = max(stored_gap.get(b, 0.0), abs(p - float(by_key.at[s.key, col])))
    branches = sorted(scores["intact"][0]) if scores["intact"] else []
    y = np.array(labels)
    out = {"run": str(run.path), "n_test": len(labels), "no_lung_field": skipped, "soft_tissue_window": soft,
           "live_vs_stored_max_abs_diff": stored_gap, "branches": {}}
    keep = np.array(readable_lungs, dtype=bool)
    for b in branches:
        row = {c: _auc_row(y, [d[b] for d in scores[c]]) for c in CONDITIONS}
        intact = np.array([d[b] for d in scores["intact"]])
        row[LUNGS_READABLE] = _auc_row(y[keep], intact[keep]) if len(set(y[keep])) == 2 else None
        out["branches"][b] = row

    # (c) and (d): the external all-COVID slices
    ext_probs, loc = {b: [] for b in branches}, {}
    lesion_share, region_share, lung_share = [], [], []
    for sl in tqdm(external, desc=f"shortcut: COVID-SemiSeg {external_split}", disable=not progress):
        img, mask = load_labelled(sl)
        field = scorer.fields(img)
        sc = scorer(img, field, want_maps=True)
        for b in branches:
            ext_probs[b].append(sc.probs[b])
        region = tolerance_region(mask, tolerance_px)
        lung = grown(field)
        lesion_share.append(float(mask.mean()))
        region_share.append(float(region.mean()))
        lung_share.append(float(lung.mean()))
        maps = {b: m for b, m in sc.maps.items() if b in branches}
        maps["uniform"] = np.ones(mask.shape, np.float32)
        maps["uniform-in-lungs"] = lung.astype(np.float32)
        for name, smap in maps.items():
            r = loc.setdefault(name, {"hits": [], "energy": []})
            r["hits"].append(pointing_hit(smap, region))
            r["energy"].append(energy_share(smap, mask))
    test_rows = preds[preds["split"] == "test"]
    for b in branches:
        t = operating_point(preds, b, run)
        p = np.array(ext_probs[b])
        hits = int((p >= t).sum())
        neg = test_rows[test_rows["label"] == 0]
        spec = None
        if f"p_{b}" in neg and (neg[f"p_{b}"] != "").all():
            tn = int((neg[f"p_{b}"].astype(float) < t).sum())
            spec = {"value": tn / len(neg), "ci": wilson(tn, len(neg))}
        out["branches"][b]["external"] = {"threshold": t, "n": len(p), "sensitivity": hits / max(len(p), 1),
                                          "sensitivity_ci": wilson(hits, len(p)), "mean_p": float(p.mean()),
                                          "covidct_test_specificity": spec}
    out["localisation"] = {}
    for name, r in loc.items():
        hits = np.array(r["hits"])
        energy = np.array([e for e in r["energy"] if not np.isnan(e)])
        k = int(round(hits.sum()))
        out["localisation"][name] = {"pointing": float(hits.mean()), "pointing_ci": wilson(k, len(hits)),
                                     "energy_share": float(energy.mean()) if len(energy) else float("nan"),
                                     "n": len(hits)}
    out["external_slices"] = {"split": external_split, "n": len(external), "lesion_area_share": float(np.mean(lesion_share)),
                              "tolerance_region_share": float(np.mean(region_share)),
                              "lung_field_share": float(np.mean(lung_share)), "tolerance_px": tolerance_px}
    return out


def scorer_of(run, device="cpu"):
    """A run with every stage is scored through its whole pipeline, one with the global branch only through it."""
    if (run.stage("fusion") / "best.pt").exists():
        return RunScorer(TrainedRun.load(run.path, device=device))
    if (run.stage("global") / "best.pt").exists():
        return GlobalScorer(run, device=device)
    raise RunError(f"{run.path}: no trained global branch to audit")


def write_audit(run, data_root, device="cpu", limit: int | None = None, tolerance_px: float = TOLERANCE_PX,
                progress: bool = True, external_split: str = "test") -> dict:
    """`audit` of the run folder `run` (core.runs.runfolder.RunFolder), written into it: AUDIT_FILE (the
    whole result) and AUDIT_TABLE (summary_rows); with external_split "train", shortcut-train.{json,csv}."""
    result = clean(audit(run, data_root, scorer_of(run, device), limit=limit, tolerance_px=tolerance_px,
                         progress=progress, external_split=external_split))
    stem = AUDIT_FILE.removesuffix(".json")
    name = stem if external_split == "test" else f"{stem}-{external_split}"
    atomic_write_text(run.path / f"{name}.json", json.dumps(result, indent=1))
    buf = io.StringIO()
    pd.DataFrame(summary_rows(result)).to_csv(buf, index=False)
    atomic_write_bytes(run.path / (AUDIT_TABLE if name == stem else f"{name}.csv"), buf.getvalue().encode())
    return result


def summary_rows(result: dict) -> list[dict]:
    """One flat row per branch: the numbers a table (or the dashboard) shows."""
    rows = []
    for b, r in result["branches"].items():
        ext = r.get("external", {})
        spec = ext.get("covidct_test_specificity") or {}
        loc = result.get("localisation", {}).get(b, {})
        rows.append({"branch": b, "test_auc": r["intact"]["auc"], "lungs_blanked_auc": r["lungs-blanked"]["auc"],
                     "lungs_only_auc": r["lungs-only"]["auc"],
                     "lungs_readable_auc": (r.get(LUNGS_READABLE) or {}).get("auc"),  # None before (e) existed
                     "external_sensitivity": ext.get("sensitivity"),
                     "external_mean_p": ext.get("mean_p"), "covidct_test_specificity": spec.get("value"),
                     "pointing": loc.get("pointing"), "pointing_ci_low": (loc.get("pointing_ci") or [None])[0],
                     "energy_share": loc.get("energy_share")})
    return rows




def _num(v) -> float:
    return float("nan") if v is None else float(v)  # strict JSON stores an undefined value as null


def _interval(ci, names=("low", "high")) -> dict:
    return dict(zip(names, (_num(v) for v in (ci or [None, None])[:2])))


def figure_frames(result: dict) -> dict:
    """The audit as three tidy tables for plots, each row with its 95% interval:
    `auc` (branch, condition, auc, low, high, left_out: the slices LUNGS_READABLE leaves out; that condition only when
    it leaves some out), `external` (branch, sensitivity, low, high, specificity,
    spec_low, spec_high, mean_p, n), `pointing` (map, kind branch/baseline, pointing, low, high, energy_share, n)."""
    auc, ext, point = [], [], []
    soft = len(result.get("soft_tissue_window") or [])
    for b, r in result["branches"].items():
        for cond in CONDITIONS:
            auc.append({"branch": b, "condition": cond, "auc": _num(r[cond]["auc"]), **_interval(r[cond].get("auc_ci"))})
        if soft and r.get(LUNGS_READABLE):
            auc.append({"branch": b, "condition": LUNGS_READABLE, "auc": _num(r[LUNGS_READABLE]["auc"]),
                        **_interval(r[LUNGS_READABLE].get("auc_ci")), "left_out": soft})
        e = r.get("external")
        if e:
            spec = e.get("covidct_test_specificity") or {}
            ext.append({"branch": b, "sensitivity": _num(e["sensitivity"]), **_interval(e.get("sensitivity_ci")),
                        "specificity": _num(spec.get("value")), **_interval(spec.get("ci"), ("spec_low", "spec_high")),
                        "mean_p": _num(e["mean_p"]), "n": e["n"]})
    for m, r in result.get("localisation", {}).items():
        point.append({"map": m, "kind": "baseline" if m in BASELINE_MAPS else "branch", "pointing": _num(r["pointing"]),
                      **_interval(r.get("pointing_ci")), "energy_share": _num(r["energy_share"]), "n": r["n"]})
    return {"auc": pd.DataFrame(auc), "external": pd.DataFrame(ext), "pointing": pd.DataFrame(point)}
