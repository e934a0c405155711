"""Everything the dashboard computes, cached: the pages only lay it out.

Objects (RunView, TrainedRun, SliceAnalysis) live in st.cache_resource; tables, curves and
encoded images in st.cache_data. Every cached function takes `stamp`, the modification times of
the run's files, so a run retrained in place is read afresh. Run names always go through
core.run_view.RunView (core.runfolder.safe_child): a name cannot leave the runs folder.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from core.attention import Box, threshold_box  # noqa: E402
from core.imaging import ImageReadError, nifti_slice_count, read_slice, read_slice_bytes, sniff_format  # noqa: E402
from core.run_view import RunView, list_runs  # noqa: E402
from core.runfolder import safe_child  # noqa: E402

from dashboard import images as im  # noqa: E402

RUNS_ENV = "COVID_LAB_RUNS"
SPLIT_ORDER = ("train", "val", "test")
THUMB = 80  # hover-card thumbnails (px)

# TrainedRun models are shared between browser sessions; CAM hooks are not thread-safe.
_MODEL_LOCK = threading.Lock()


# ---- where the runs are ------------------------------------------------------------------------
def runs_dir(argv: list[str] | None = None) -> Path:
    """`streamlit run dashboard/app.py -- --runs DIR`, else $COVID_LAB_RUNS, else ./runs."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--runs", default=None)
    args, _ = p.parse_known_args(sys.argv[1:] if argv is None else argv)
    return Path(args.runs or os.environ.get(RUNS_ENV) or "runs")


def available_runs(runs: str | Path) -> list[str]:
    """Run folders under `runs`, newest first (only names safe_child accepts)."""
    out = []
    for name in list_runs(runs):
        try:
            safe_child(runs, name)
        except ValueError:
            continue
        out.append(name)
    return out


def stamp(runs: str | Path, name: str) -> str:
    """Changes whenever the run is retrained (its configuration, predictions or fusion weights change).
    Not the features folder: a newly cached 3D map must not invalidate the loaded models."""
    path = safe_child(runs, name)
    parts = []
    for f in (path / "config.json", path / "predictions.csv", path / "fusion" / "best.pt"):
        try:
            parts.append(str(f.stat().st_mtime_ns))
        except OSError:
            parts.append("-")
    return ":".join(parts)


run_stamp = stamp  # for functions whose `stamp` argument hides it


# ---- run objects ------------------------------------------------------------------------------
@st.cache_resource(max_entries=4, show_spinner=False)
def view(runs: str, name: str, stamp: str) -> RunView:
    return RunView(runs, name)


@st.cache_resource(max_entries=2, show_spinner="Loading the trained models...")
def trained(runs: str, name: str, stamp: str):
    from core.inference import TrainedRun

    rv = view(runs, name, stamp)  # validates the name
    return TrainedRun.load(rv.run.path)


@st.cache_data(max_entries=8, show_spinner=False)
def predictions(runs: str, name: str, stamp: str) -> pd.DataFrame:
    return view(runs, name, stamp).predictions.copy()


def branches(df: pd.DataFrame) -> list[str]:
    return RunView.branches_in(df)


def splits(df: pd.DataFrame) -> list[str]:
    present = set(df.split)
    return [s for s in SPLIT_ORDER if s in present] + sorted(present - set(SPLIT_ORDER))


# ---- overview ---------------------------------------------------------------------------------
METRICS = ("accuracy", "f1", "auc", "sensitivity", "specificity")


def n_boot() -> int:
    """Bootstrap resamples for the AUC/F1 intervals ($COVID_LAB_BOOT; tests use fewer)."""
    try:
        return max(20, int(os.environ.get("COVID_LAB_BOOT", "500")))
    except ValueError:
        return 500


def _stored_metrics(rv: RunView, split: str) -> dict | None:
    """metrics_<split>.json written by `python -m train evaluate`, if newer than the predictions."""
    import json

    f = rv.run.path / f"metrics_{split}.json"
    try:
        if f.stat().st_mtime_ns < rv.run.predictions_csv.stat().st_mtime_ns:
            return None
        m = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    want = set(RunView.branches_in(rv.predictions))
    ok = isinstance(m, dict) and want <= set(m) and all(all(k in m[b] for k in METRICS) for b in want)
    return {b: m[b] for b in RunView.branches_in(rv.predictions)} if ok else None


@st.cache_data(max_entries=16, show_spinner="Bootstrapping 95% intervals...")
def metric_table(runs: str, name: str, stamp: str, split: str) -> pd.DataFrame:
    """RunView.metric_table's table: value [95% interval] per branch. Reuses the run's fresh
    metrics_<split>.json when there is one (the bootstrap is the slow part)."""
    rv = view(runs, name, stamp)
    metrics = _stored_metrics(rv, split) or rv.metrics(split, n_boot=n_boot())
    rows = []
    for b, m in metrics.items():
        row = {"branch": b, "n": m["n"]}
        for k in METRICS:
            v, (lo, hi) = m[k]["value"], m[k]["ci"]
            row[k] = f"{v:.3f} [{lo:.3f}, {hi:.3f}]"
        rows.append(row)
    return pd.DataFrame(rows)


@st.cache_data(max_entries=16, show_spinner=False)
def paper_comparison(runs: str, name: str, stamp: str, split: str) -> pd.DataFrame:
    """This run's value of the paper's metrics, for the branches the paper reports."""
    rv = view(runs, name, stamp)
    paper = rv.paper_table()
    table = metric_table(runs, name, stamp, split).set_index("branch")
    rows = []
    for b in paper.branch.unique():
        if b in table.index:
            rows.append({"branch": b, **{k: table.at[b, k].split(" ")[0] for k in ("accuracy", "f1", "auc")}})
    return pd.DataFrame(rows, columns=["branch", "accuracy", "f1", "auc"])


@st.cache_data(max_entries=16, show_spinner=False)
def roc_curves(runs: str, name: str, stamp: str, split: str) -> dict[str, dict]:
    from sklearn.metrics import roc_auc_score, roc_curve

    df = predictions(runs, name, stamp)
    part = df[df.split == split]
    out = {}
    if part.label.nunique() < 2:
        return out
    for b in branches(df):
        fpr, tpr, _ = roc_curve(part.label, part[f"p_{b}"])
        out[b] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "auc": float(roc_auc_score(part.label, part[f"p_{b}"]))}
    return out


@st.cache_data(max_entries=16, show_spinner=False)
def confusion(runs: str, name: str, stamp: str, split: str) -> np.ndarray:
    """[[TN, FP], [FN, TP]] of the decision branch on `split` (rows: truth, columns: prediction)."""
    df = predictions(runs, name, stamp)
    part = df[df.split == split]
    m = np.zeros((2, 2), int)
    for t, p in zip(part.label.astype(int), part.pred.astype(int)):
        m[t, p] += 1
    return m


@st.cache_data(max_entries=16, show_spinner=False)
def calibration(runs: str, name: str, stamp: str, split: str, n_bins: int = 10) -> pd.DataFrame:
    """Reliability bins per branch: mean predicted probability, observed COVID fraction, count."""
    df = predictions(runs, name, stamp)
    part = df[df.split == split]
    rows = []
    edges = np.linspace(0, 1, n_bins + 1)
    for b in branches(df):
        p = part[f"p_{b}"].to_numpy(float)
        y = part.label.to_numpy(int)
        idx = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
        for k in range(n_bins):
            sel = idx == k
            if sel.any():
                rows.append({"branch": b, "bin": k, "mean_p": float(p[sel].mean()),
                             "observed": float(y[sel].mean()), "n": int(sel.sum())})
    return pd.DataFrame(rows, columns=["branch", "bin", "mean_p", "observed", "n"])


def timings_table(rv: RunView) -> pd.DataFrame:
    t = rv.timings()
    return pd.DataFrame([{"stage": k, "seconds": float(v)} for k, v in t.items() if k != "total"])


def stage_table(rv: RunView) -> pd.DataFrame:
    rows = []
    for stage in ("global", "heatmap", "infnet", "infected", "global+heatmap", "fusion"):
        s = rv.stage_summary(stage)
        if not s:
            continue
        rows.append({"stage": stage, "best epoch": s.get("best_epoch"), "epochs run": s.get("epochs_run"),
                     "best val AUC": s.get("best_val_auc"),
                     "recipe": (s.get("recipe") or {}).get("name") if isinstance(s.get("recipe"), dict) else s.get("recipe")})
    return pd.DataFrame(rows)


STRATEGY_ORDER = ("GHIF", "GHI-F", "G-H-I-F")


def strategy_comparison(runs: str, name: str, stamp: str) -> tuple[pd.DataFrame, str] | None:
    """The training-strategy comparison (the paper's Table 3), when there is one to show:
    the run config's own `strategy_comparison`, else the runs beside this one that share its
    backbone and init but were trained with other strategies (fusion on the test split, mean and
    std over seeds), else `table3.csv` that `python -m train reproduce` wrote beside the runs folder.
    Returns (table, where it came from) or None."""
    rv = view(runs, name, stamp)
    raw = rv.config.get("strategy_comparison")
    if isinstance(raw, dict) and raw:
        return pd.DataFrame([{"strategy": k, **(v if isinstance(v, dict) else {"value": v})} for k, v in raw.items()]), \
            "the run's configuration"
    if isinstance(raw, list) and raw and all(isinstance(r, dict) for r in raw):
        return pd.DataFrame(raw), "the run's configuration"
    siblings = tuple((n, run_stamp(runs, n)) for n in available_runs(runs)[:200])
    table = _sibling_strategies(runs, name, siblings)
    if table is not None:
        return table, f"runs under {Path(runs).name}/ with the same backbone and init"
    f = Path(runs).parent / "table3.csv"
    if f.is_file() and f.stat().st_size < 1_000_000:
        try:
            return pd.read_csv(f), f"{f.parent.name}/table3.csv (python -m train reproduce)"
        except (ValueError, OSError):
            return None
    return None


@st.cache_data(max_entries=8, show_spinner=False)
def _sibling_strategies(runs: str, name: str, siblings: tuple) -> pd.DataFrame | None:
    from core.metrics import binary_metrics

    stamps = dict(siblings)
    me = (view(runs, name, stamps[name]).config.get("pipeline") or {}) if name in stamps else {}
    rows = []
    for other, st_ in siblings:
        try:
            ov = view(runs, other, st_)
            pipe = ov.config.get("pipeline") or {}
            if (pipe.get("backbone"), pipe.get("init")) != (me.get("backbone"), me.get("init")):
                continue
            df = ov.predictions
            if "p_fusion" not in df or not (df.split == "test").any():
                continue
            test = df[df.split == "test"]
            m = binary_metrics(test.label.to_numpy(), test.p_fusion.to_numpy(float), n_boot=0)
            rows.append({"strategy": pipe.get("strategy", "G-H-I-F"), "run": other,
                         **{k: m[k]["value"] for k in ("accuracy", "f1", "auc")}})
        except Exception:  # a half-written run beside this one: leave it out
            continue
    if len({r["strategy"] for r in rows}) < 2:
        return None
    df = pd.DataFrame(rows)
    out = []
    for strategy, g in sorted(df.groupby("strategy"), key=lambda t: (STRATEGY_ORDER + (t[0],)).index(t[0])):
        row = {"strategy": strategy, "runs": len(g)}
        for k in ("accuracy", "f1", "auc"):
            v = g[k].to_numpy(float)
            row[k] = f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"
        out.append(row)
    return pd.DataFrame(out)


def fusion_input(rv: RunView, key: str) -> np.ndarray:
    """The stored standardised fusion-layer input of a slice of the run."""
    return rv.features("fusion")[feature_keys(rv).index(key)]


def out_of_range(rv: RunView, vector: np.ndarray) -> tuple[float, float]:
    """(largest |standardised fusion input| of this slice, the largest on the training split).
    Much larger than the training split's: the fusion probability extrapolates."""
    x = rv.features("fusion")
    keys = feature_keys(rv)
    split = rv.predictions.set_index("key").split
    train = np.array([split.get(k) == "train" for k in keys])
    ref = float(np.abs(x[train]).max()) if train.any() else float(np.abs(x).max())
    return float(np.abs(vector).max()), ref


# ---- per-slice images -------------------------------------------------------------------------
def feature_keys(rv: RunView) -> list[str]:
    """Slice keys in the feature caches' order (the rows of features() and embedding())."""
    return list(rv._fusion["keys"])  # RunView keeps the order with the cached fusion vectors


@st.cache_data(max_entries=4, show_spinner="Rendering thumbnails...")
def hover_images(runs: str, name: str, stamp: str, size: int = THUMB) -> dict[str, list[str]]:
    """key -> [slice, fusion CAM overlay, infected-region overlay] as small JPEG data URIs."""
    rv = view(runs, name, stamp)
    out = {}
    for key in feature_keys(rv):
        img = rv.image(key, size)
        out[key] = [im.data_uri(im.grey_rgb(img), "JPEG", 80),
                    im.data_uri(im.cam_overlay(img, rv.fusion_cam(key)), "JPEG", 80),
                    im.data_uri(im.lesion_overlay(img, rv.lesion_prob(key),
                                                  boxes=[(b, im.BOX_COLOURS["lesion"], 1) for b in rv.lesion_boxes(key)]),
                                "JPEG", 80)]
    return out


@st.cache_data(max_entries=256, show_spinner=False)
def thumbnail(runs: str, name: str, stamp: str, key: str, size: int = 112) -> bytes:
    return im.to_png(im.grey_rgb(view(runs, name, stamp).image(key, size)))


@st.cache_data(max_entries=64, show_spinner=False)
def case_images(runs: str, name: str, stamp: str, key: str, size: int = 224) -> dict[str, bytes]:
    """PNG bytes of the stored maps of one slice (at the run's tau)."""
    rv = view(runs, name, stamp)
    img = rv.image(key, size)
    sides = rv.side_boxes(key)
    lesion_boxes = [(b, im.BOX_COLOURS["lesion"]) for b in rv.lesion_boxes(key)]
    side_boxes = [(b, im.BOX_COLOURS[s]) for s, b in sides.items() if b is not None]
    out = {
        "slice": im.to_png(im.grey_rgb(img)),
        "lesion": im.to_png(im.lesion_overlay(img, rv.lesion_prob(key), boxes=lesion_boxes + side_boxes)),
        "fusion_cam": im.to_png(im.cam_overlay(img, rv.fusion_cam(key))),
    }
    for s, b in sides.items():
        out[s] = im.to_png(im.crop_image(img, b, 160) if b is not None else im.blank(160, "no lesion on this side"))
    return out


# ---- live analysis (tau slider, uploads) -------------------------------------------------------
@st.cache_resource(max_entries=32, show_spinner="Analysing the slice...")
def analysis(runs: str, name: str, stamp: str, key: str):
    """The SliceAnalysis of a data-set slice, computed once; a tau move only re-scores it.

    The attention map is the run's cached one (what its heatmap crops were cut from), so the box
    at the run's tau is the stored heatmap box."""
    rv = view(runs, name, stamp)
    tr = trained(runs, name, stamp)
    with _MODEL_LOCK:
        a = tr.analyse(read_slice(rv.slice_paths[key]))
    return replace(a, attention=rv.attention_map(key, a.attention.shape[-1]))


def rescore(tr, a, tau: float):
    """(re-scored SliceAnalysis, milliseconds of compute)."""
    t0 = time.perf_counter()
    with _MODEL_LOCK:
        out = tr.rescore_tau(a, float(tau))
    return out, (time.perf_counter() - t0) * 1000


def tau_images(a, tau: float, size: int = 224) -> dict[str, bytes]:
    """The attention map with the Eq. 2 region at `tau`, its box, and the crop the heatmap branch sees."""
    hc = threshold_box(a.attention, tau)
    img = im.as_uint8(a.image)
    attention = im.cam_overlay(img, a.attention, size=size, boxes=[(hc.box, im.BOX_COLOURS["heatmap"])])
    region = im.overlay(img, hc.region.astype(np.float32), "region", alpha=0.55, threshold=0.5, size=size,
                        boxes=[(hc.box, im.BOX_COLOURS["heatmap"])])
    return {"attention": im.to_png(attention), "region": im.to_png(region),
            "crop": im.to_png(im.crop_image(a.hires, hc.box, 160))}


def analysis_images(tr, a, size: int = 224) -> dict[str, bytes]:
    """Lesion overlay, lung crops and fusion CAM of a live SliceAnalysis (uploads)."""
    img = im.as_uint8(a.image)
    boxes = [(b, im.BOX_COLOURS["lesion"]) for b in a.lesion_boxes]
    boxes += [(b, im.BOX_COLOURS[s]) for s, b in a.side_boxes.items() if b is not None]
    with _MODEL_LOCK:
        cam = tr.fusion_cam(a)
    out = {"slice": im.to_png(im.grey_rgb(img, size)),
           "lesion": im.to_png(im.lesion_overlay(img, a.lesion_prob, size=size, boxes=boxes)),
           "fusion_cam": im.to_png(im.cam_overlay(img, cam, size=size))}
    for s, b in a.side_boxes.items():
        out[s] = im.to_png(im.crop_image(a.hires, b, 160) if b is not None else im.blank(160, "no lesion on this side"))
    small = im.grey_rgb(img, THUMB)
    out["thumbs"] = [im.data_uri(small, "JPEG", 80),
                     im.data_uri(im.cam_overlay(img, cam, size=THUMB), "JPEG", 80),
                     im.data_uri(im.lesion_overlay(img, a.lesion_prob, size=THUMB,
                                                   boxes=[(b, im.BOX_COLOURS["lesion"], 1) for b in a.lesion_boxes]), "JPEG", 80)]
    return out


def nearest_keys(rv: RunView, vector: np.ndarray, k: int = 6) -> list[tuple[str, float]]:
    """The run's slices nearest a new slice's fusion vector."""
    from core.embedding import nearest

    idx, d = nearest(rv.features("fusion"), vector, k)
    keys = feature_keys(rv)
    return [(keys[i], float(di)) for i, di in zip(idx, d)]


def box_text(box: Box) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in box.as_list()) + "]"


def probs_frame(probs: dict, order: list[str]) -> pd.DataFrame:
    names = [b for b in order if b in probs] + [b for b in probs if b not in order]
    return pd.DataFrame({"branch": names, "p(COVID)": [float(probs[b]) for b in names]})


# ---- uploads ----------------------------------------------------------------------------------
UPLOAD_TYPES = ["png", "jpg", "jpeg", "dcm", "nii", "gz"]
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def display_name(filename: str | None) -> str:
    """A harmless label for an uploaded file: its base name, odd characters replaced, short.
    It is only ever shown and used to tell .nii/.nii.gz/.dcm apart, never used as a path."""
    base = re.split(r"[\\/]", filename or "")[-1]
    base = _SAFE.sub("_", base).strip("._") or "upload"
    return base[-80:]


def is_nifti(data: bytes, filename: str) -> bool:
    return sniff_format(data[:400], display_name(filename)) == "nifti"


def upload_slice_count(data: bytes, filename: str) -> int:
    """Axial slices of an uploaded NIfTI volume (ImageReadError when it is not one)."""
    return nifti_slice_count(data, display_name(filename))


@dataclass
class UploadResult:
    error: str | None = None
    slice01: np.ndarray | None = None
    analysis: object = None
    fusion_vector: np.ndarray | None = None
    name: str = "upload"
    digest: str = ""


def analyse_upload(tr, data: bytes, filename: str, slice_index: int | None = None, tau: float | None = None
                   ) -> UploadResult:
    """Read and analyse an uploaded slice. Never raises: a bad file gives UploadResult.error."""
    name = display_name(filename)
    digest = hashlib.sha256(data or b"").hexdigest()[:16]
    try:
        img = read_slice_bytes(data, name, slice_index)
    except ImageReadError as exc:
        return UploadResult(error=str(exc), name=name, digest=digest)
    except Exception as exc:  # a reader library failing in a way we did not foresee
        return UploadResult(error=f"{name}: this file could not be read as a CT slice ({type(exc).__name__}).",
                            name=name, digest=digest)
    try:
        with _MODEL_LOCK:
            a = tr.analyse(img, tau)
            vec = tr.fusion_vector(a)
    except Exception as exc:
        return UploadResult(error=f"{name}: the slice was read but could not be analysed ({type(exc).__name__}).",
                            name=name, digest=digest)
    return UploadResult(slice01=img, analysis=a, fusion_vector=vec, name=name, digest=digest)


def place_in_map(rv: RunView, vector: np.ndarray, method: str) -> np.ndarray:
    """3D position of a new slice in the run's fusion-feature map."""
    from core.embedding import place

    return place(rv.features("fusion"), rv.embedding(method, "fusion"), vector)


# ---- the 3D map -------------------------------------------------------------------------------
@st.cache_data(max_entries=16, show_spinner="Computing the 3D map (once per run and feature set)...")
def embedding(runs: str, name: str, stamp: str, method: str, which: str) -> np.ndarray:
    return view(runs, name, stamp).embedding(method, which)


COLOUR_BY = ("label", "prediction", "correct / incorrect", "margin |p - t|", "split")
PALETTE = {"non-COVID": "#4C9BE8", "COVID": "#E8604C", "correct": "#3BB273", "incorrect": "#E15554",
           "train": "#9AA0A6", "val": "#F2B134", "test": "#8E6CEF"}


def map_points(df: pd.DataFrame, keys: list[str], xyz: np.ndarray, colour_by: str, thumbs: dict) -> dict:
    """The component's args for the 3D map: points, groups (or a continuous colour) and thumbnails."""
    d = df.set_index("key").loc[keys]
    name = {0: "non-COVID", 1: "COVID"}
    points = [{"key": k, "x": float(p[0]), "y": float(p[1]), "z": float(p[2]),
               "text": f"{name[int(r.label)]} · pred {name[int(r.pred)]} · p={r.p:.3f} · {r.split}",
               "outcome": r.outcome, "imgs": thumbs.get(k, [])}
              for k, p, r in zip(keys, xyz, d.itertuples())]
    groups, continuous = [], None
    if colour_by == "margin |p - t|":
        continuous = {"values": d.margin.round(4).tolist(), "title": "|p - t|"}
    else:
        if colour_by == "label":
            cat = d.label.map(name)
        elif colour_by == "prediction":
            cat = d.pred.map(name)
        elif colour_by == "correct / incorrect":
            cat = d.correct.map({True: "correct", False: "incorrect"})
        else:
            cat = d.split
        for c in pd.unique(cat):
            groups.append({"name": str(c), "color": PALETTE.get(str(c), "#cccccc"),
                           "indices": [int(i) for i in np.nonzero((cat == c).to_numpy())[0]]})
    return {"points": points, "groups": groups, "continuous": continuous}


def cached_upload(state, tr, run_name: str, run_stamp: str, raw: bytes, filename: str,
                  slice_index: int | None) -> tuple[UploadResult, dict]:
    """analyse_upload + its images, kept in the session for the last upload: a tau move or any other
    rerun does not analyse the file again. Returns (result, images); images is {} on error."""
    digest = hashlib.sha256(raw or b"").hexdigest()
    k = (run_name, run_stamp, digest, slice_index)
    hit = state.get("_upload_cache")
    if hit is not None and hit[0] == k:
        return hit[1], hit[2]
    result = analyse_upload(tr, raw, filename, slice_index)
    images = {}
    if result.error is None:
        try:
            images = analysis_images(tr, result.analysis)
        except Exception as exc:
            result = replace(result, error=f"{result.name}: the slice was analysed but its maps could not be drawn "
                                           f"({type(exc).__name__}).", analysis=None)
    state["_upload_cache"] = (k, result, images)
    return result, images
