"""The dashboard's cache: which runs there are, and Streamlit-cached wrappers around what core computes
and core.pictures.slice_images draws. The pages only lay it out.

Objects (RunView, TrainedRun, SliceAnalysis) live in st.cache_resource; tables, curves and
encoded images in st.cache_data. Every cached function takes `stamp`, the modification times of
the run's files, so a run retrained in place is read afresh. Run names always go through
core.runs.run_view.RunView (core.runs.runfolder.safe_child): a name cannot leave the runs folder.
The numbers come from core (core.results: evaluation, compare, tables; RunView), the pictures from
core.pictures.slice_images; uploads are dashboard.uploads.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from core.data.imaging import read_slice  # noqa: E402
from core.pictures import images as im  # noqa: E402
from core.pictures import slice_images  # noqa: E402
from core.results import evaluation  # noqa: E402
from core.results.metrics import METRICS  # noqa: E402
from core.runs.run_view import RunView, list_runs  # noqa: E402
from core.runs.runfolder import safe_child  # noqa: E402
from core.trust.calls import TRUST_ERRORS  # noqa: E402

RUNS_ENV = "COVID_LAB_RUNS"
SPLIT_ORDER = ("train", "val", "test")

# TrainedRun models are shared between browser sessions; CAM hooks are not thread-safe.
MODEL_LOCK = threading.Lock()


# ---- where the runs are ------------------------------------------------------------------------
def runs_dir(argv: list[str] | None = None) -> Path:
    """`streamlit run dashboard/app.py -- --runs DIR`, else $COVID_LAB_RUNS, else ./runs."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--runs", default=None)
    args, _ = p.parse_known_args(sys.argv[1:] if argv is None else argv)
    return Path(args.runs or os.environ.get(RUNS_ENV) or "runs")


def available_runs(runs: str | Path, in_training: bool = False) -> list[str]:
    """Run folders under `runs`, newest first (only names safe_child accepts); `in_training`: runs whose
    training has started count too (core.runs.run_view.list_runs)."""
    out = []
    for name in list_runs(runs, in_training):
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


def audit_frames(runs: str, name: str, stamp: str) -> dict | None:
    """The run's shortcut audit (`python -m train shortcut`) as plot tables, or None when not measured.
    Keyed by the file's time too: an audit run while the dashboard is open shows at the next rerun."""
    from core.audits.shortcut import AUDIT_FILE

    try:
        mtime = (view(runs, name, stamp).run.path / AUDIT_FILE).stat().st_mtime_ns
    except OSError:
        return None
    return _audit_frames(runs, name, stamp, mtime)


@st.cache_data(max_entries=8, show_spinner=False)
def _audit_frames(runs: str, name: str, stamp: str, mtime: int) -> dict:
    from core.audits.shortcut import AUDIT_FILE, figure_frames

    return figure_frames(view(runs, name, stamp).run_json(AUDIT_FILE))


def branches(df: pd.DataFrame) -> list[str]:
    return RunView.branches_in(df)


def splits(df: pd.DataFrame) -> list[str]:
    present = set(df.split)
    return [s for s in SPLIT_ORDER if s in present] + sorted(present - set(SPLIT_ORDER))


# ---- overview ---------------------------------------------------------------------------------
def n_boot() -> int:
    """Bootstrap resamples for the AUC/F1 intervals ($COVID_LAB_BOOT; tests use fewer)."""
    try:
        return max(20, int(os.environ.get("COVID_LAB_BOOT", "500")))
    except ValueError:
        return 500


@st.cache_data(max_entries=16, show_spinner="Bootstrapping 95% intervals...")
def metric_values(runs: str, name: str, stamp: str, split: str) -> dict:
    """RunView.metrics of one split. Reuses the run's fresh metrics_<split>.json when there is one (the
    bootstrap is the slow part)."""
    rv = view(runs, name, stamp)
    return rv.stored_metrics(split) or rv.metrics(split, n_boot=n_boot())


def metric_table(runs: str, name: str, stamp: str, split: str) -> pd.DataFrame:
    """value [95% interval] of each metric, one row per branch."""
    rows = []
    for b, m in metric_values(runs, name, stamp, split).items():
        row = {"branch": b, "n": m["n"]}
        for k in METRICS:
            v, (lo, hi) = m[k]["value"], m[k]["ci"]
            row[k] = f"{v:.3f} [{lo:.3f}, {hi:.3f}]"
        rows.append(row)
    return pd.DataFrame(rows)


@st.cache_data(max_entries=8, show_spinner=False)
def glance(runs: str, name: str, stamp: str) -> pd.DataFrame:
    """core.results.glance's table of the run's decision branch: COVID-CT test, another hospital (also in other lung
    windows), another source, the lungs blanked; each beside the lesion share alone."""
    from core.audits.shortcut import AUDIT_FILE
    from core.results.glance import glance as rows
    from core.results.glance import glance_table

    rv = view(runs, name, stamp)
    test = metric_values(runs, name, stamp, "test") if (rv.predictions.split == "test").any() else None
    return glance_table(rows(rv.decision_branch(), test, external_report(runs, name, stamp), rv.run_json(AUDIT_FILE),
                             windows_report(runs, name, stamp)))


def metric_difference(a, b, split: str) -> pd.DataFrame:
    """Run b minus run a (ui.Ctx each), metric by metric, for the branches both have."""
    from core.results.compare import difference_table

    return difference_table(metric_values(a.runs, a.name, a.stamp, split), metric_values(b.runs, b.name, b.stamp, split))


@st.cache_data(max_entries=8, show_spinner=False)
def decisions(runs: str, name: str, stamp: str, other: str, other_stamp: str) -> pd.DataFrame:
    """core.results.compare.decisions of two runs (this one first)."""
    from core.results.compare import decisions as both

    return both(predictions(runs, name, stamp), predictions(runs, other, other_stamp))


def with_changed(a, b) -> pd.DataFrame:
    """Run a's predictions (ui.Ctx each) with column `changed`: its decision differs in run b (None: b lacks the slice)."""
    from core.results.compare import changed_from

    return a.df.assign(changed=changed_from(a.df, decisions(a.runs, a.name, a.stamp, b.name, b.stamp)))


@st.cache_data(max_entries=16, show_spinner=False)
def paper_comparison(runs: str, name: str, stamp: str, split: str) -> pd.DataFrame:
    """This run's value of the paper's metrics, for the branches the paper reports."""
    paper = view(runs, name, stamp).paper_table()
    values = metric_values(runs, name, stamp, split)
    rows = [{"branch": b, **{k: f"{values[b][k]['value']:.3f}" for k in ("accuracy", "f1", "auc")}}
            for b in paper.branch.unique() if b in values]
    return pd.DataFrame(rows, columns=["branch", "accuracy", "f1", "auc"])


@st.cache_data(max_entries=16, show_spinner=False)
def roc_curves(runs: str, name: str, stamp: str, split: str) -> dict[str, dict]:
    """core.results.evaluation.roc_curves of every branch."""
    df = predictions(runs, name, stamp)
    return evaluation.roc_curves(df, split, branches(df))


@st.cache_data(max_entries=16, show_spinner=False)
def confusion(runs: str, name: str, stamp: str, split: str) -> np.ndarray:
    """core.results.evaluation.confusion of the decision branch: [[TN, FP], [FN, TP]]."""
    return evaluation.confusion(predictions(runs, name, stamp), split)


@st.cache_data(max_entries=16, show_spinner=False)
def calibration(runs: str, name: str, stamp: str, split: str, n_bins: int = 10) -> pd.DataFrame:
    """core.results.evaluation.calibration of every branch: branch, bin, mean_p, observed, n."""
    df = predictions(runs, name, stamp)
    return evaluation.calibration(df, split, branches(df), n_bins)


def strategy_comparison(runs: str, name: str, stamp: str) -> tuple[pd.DataFrame, str] | None:
    """core.results.tables.strategy_comparison of the run among the runs beside it: (table, where it came from) or
    None. Cached until this run, a run beside it or the reproduced table3.csv changes."""
    from core.results.tables import REPRODUCED_TABLE3

    siblings = tuple((n, run_stamp(runs, n)) for n in available_runs(runs)[:200])
    try:
        table3_mtime = (Path(runs).parent / REPRODUCED_TABLE3).stat().st_mtime_ns
    except OSError:
        table3_mtime = None
    return _strategy_comparison(str(runs), name, stamp, siblings, table3_mtime)


@st.cache_data(max_entries=8, show_spinner=False)
def _strategy_comparison(runs: str, name: str, stamp: str, siblings: tuple, table3_mtime: int | None):
    from core.results.tables import strategy_comparison as compare

    return compare(runs, name, [n for n, _ in siblings])


# ---- per-slice images -------------------------------------------------------------------------
@st.cache_data(max_entries=4, show_spinner="Rendering thumbnails...")
def hover_images(runs: str, name: str, stamp: str, size: int = slice_images.THUMB) -> dict[str, list[str]]:
    """slice_images.hover_cards of the run: key -> [slice, fusion CAM, infected regions] as JPEG data URIs."""
    return slice_images.hover_cards(view(runs, name, stamp), size)


@st.cache_data(max_entries=256, show_spinner=False)
def thumbnail(runs: str, name: str, stamp: str, key: str, size: int = 112) -> bytes:
    return im.to_png(im.grey_rgb(view(runs, name, stamp).image(key, size)))


@st.cache_data(max_entries=64, show_spinner=False)
def case_images(runs: str, name: str, stamp: str, key: str, size: int = 224) -> dict[str, bytes]:
    """slice_images.stored_images: PNG bytes of the stored maps of one slice (at the run's tau)."""
    return slice_images.stored_images(view(runs, name, stamp), key, size)


# ---- live analysis (tau slider) ----------------------------------------------------------------
@st.cache_resource(max_entries=32, show_spinner="Analysing the slice...")
def analysis(runs: str, name: str, stamp: str, key: str):
    """The SliceAnalysis of a data-set slice, computed once; a tau move only re-scores it.

    The attention map is the run's cached one (what its heatmap crops were cut from), so the box
    at the run's tau is the stored heatmap box."""
    rv = view(runs, name, stamp)
    tr = trained(runs, name, stamp)
    with MODEL_LOCK:
        a = tr.analyse(read_slice(rv.slice_paths[key]))
    return replace(a, attention=rv.attention_map(key, a.attention.shape[-1]))


def rescore(tr, a, tau: float):
    """(re-scored SliceAnalysis, milliseconds of compute)."""
    t0 = time.perf_counter()
    with MODEL_LOCK:
        out = tr.rescore_tau(a, float(tau))
    return out, (time.perf_counter() - t0) * 1000


# ---- the 3D map -------------------------------------------------------------------------------
@st.cache_data(max_entries=16, show_spinner="Computing the 3D map (once per run and feature set)...")
def embedding(runs: str, name: str, stamp: str, method: str, which: str) -> np.ndarray:
    return view(runs, name, stamp).embedding(method, which)


# ---- trust (core.trust): the map verdicts, each slice's prediction set and out-of-distribution flag -------------
# (a run that cannot give sets or a flag raises one of TRUST_ERRORS, core.trust.calls: the pages say why)


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def trust(runs: str, name: str, stamp: str) -> dict:
    """RUN/trust.json ({part: result}; {} when there is none): read again whenever `train trust` rewrites it."""
    from core.trust.store import TRUST_JSON

    return _trust(runs, name, stamp, _mtime(view(runs, name, stamp).run.path / TRUST_JSON))


@st.cache_data(max_entries=8, show_spinner=False)
def _trust(runs: str, name: str, stamp: str, mtime: int | None) -> dict:
    from core.trust.store import load

    return load(view(runs, name, stamp).run) if mtime is not None else {}


def maps_stale(runs: str, name: str, stamp: str) -> bool:
    """True when the maps part was measured on other checkpoints than the run's own (it was retrained since)."""
    from core.trust.store import checkpoints

    maps = trust(runs, name, stamp).get("maps") or {}
    return (maps.get("key_parts") or {}).get("checkpoints") != checkpoints(view(runs, name, stamp).run)


@st.cache_resource(max_entries=16, show_spinner=False)
def prediction_sets(runs: str, name: str, stamp: str, branch: str, level: float):
    """core.trust.conformal.PredictionSets of a branch at `level`, calibrated on the run's validation split."""
    from core.trust.conformal import fit_run

    return fit_run(view(runs, name, stamp).run, branch, level)


def ood_alpha(runs: str, name: str, stamp: str) -> float:
    """The flag's false-alarm level (core.trust.slices.flag_alpha of the run's trust.json)."""
    from core.trust.slices import flag_alpha

    return flag_alpha(trust(runs, name, stamp))


@st.cache_resource(max_entries=4, show_spinner="Fitting the out-of-distribution flag...")
def ood_flag(runs: str, name: str, stamp: str, alpha: float):
    """core.trust.ood.OodFlag of the run: its training slices' fusion-layer inputs, threshold on validation."""
    from core.trust.ood import fit_run

    return fit_run(view(runs, name, stamp).run, alpha)


@st.cache_data(max_entries=8, show_spinner="Checking the run's slices for the out-of-distribution flag...")
def slice_flags(runs: str, name: str, stamp: str, alpha: float) -> pd.DataFrame:
    """key and core.trust.ood.COLUMNS of every slice of the run (core.trust.slices.stored_slice_flags: read from
    the run's feature cache, fitted and checked only when not stored there)."""
    from core.trust.slices import stored_slice_flags

    return stored_slice_flags(view(runs, name, stamp), alpha, lambda: ood_flag(runs, name, stamp, alpha))


def slice_statistics(runs: str, name: str, stamp: str, key: str):
    """core.trust.image_check statistics of one of the run's slices (cached by content on disk)."""
    from core.trust.image_check import measure_file

    return measure_file(view(runs, name, stamp).slice_paths[key])


@st.cache_data(max_entries=256, show_spinner=False)
def lungs_black(path: str, stamp: int):
    """How black the lungs of a slice file are (core.knowledge.lung_window.LungsBlack, or None), on its lung field;
    `stamp`: the file's modification time, so a file replaced is measured again."""
    from core.knowledge.lung_window import of_file

    return of_file(path)


@st.cache_data(max_entries=64, show_spinner=False)
def image_statistics(slice01: np.ndarray):
    """core.trust.image_check statistics of a slice as read (an upload, a scan's slice)."""
    from core.trust.image_check import measure

    return measure(slice01)


def with_trust(ctx, df: pd.DataFrame, level: float) -> tuple[pd.DataFrame, list[str]]:
    """(`df` with column `set` (the decision branch's prediction set at `level`) and core.trust.ood.COLUMNS,
    what could not be added and why): a part the run cannot give is named, the rest still shown."""
    from core.trust.slices import with_sets

    problems = []
    try:
        df = with_sets(df, prediction_sets(ctx.runs, ctx.name, ctx.stamp, ctx.rv.decision_branch(), level),
                       ctx.rv.decision_branch())
    except TRUST_ERRORS as exc:
        problems.append(f"no prediction sets: {exc}")
    try:
        flags = slice_flags(ctx.runs, ctx.name, ctx.stamp, ood_alpha(ctx.runs, ctx.name, ctx.stamp))
        df = df.merge(flags, on="key", how="left")
    except TRUST_ERRORS as exc:
        problems.append(f"no out-of-distribution flag: {exc}")
    return df, problems


def external_rows(runs: str, name: str, stamp: str) -> pd.DataFrame | None:
    """RUN/external.csv (the external sources' scored slices) or None when they were not scored."""
    from core.audits.external import ROWS_FILE

    f = view(runs, name, stamp).run.path / ROWS_FILE
    mtime = _mtime(f)
    return None if mtime is None else _external_rows(str(f), mtime)


@st.cache_data(max_entries=8, show_spinner=False)
def _external_rows(path: str, mtime: int) -> pd.DataFrame:
    return pd.read_csv(path)


def two_step(runs: str, name: str, stamp: str):
    """The run's fitted two-step decision (core.knowledge.decision), or None when it decides without one."""
    from core.knowledge.decision import DECISION_FILE, TwoStepDecision

    rv = view(runs, name, stamp)
    mtime = _mtime(rv.run.stage(TwoStepDecision.name) / DECISION_FILE)
    return None if mtime is None else _two_step(runs, name, stamp, mtime)


@st.cache_data(max_entries=8, show_spinner=False)
def _two_step(runs: str, name: str, stamp: str, mtime: int):
    from core.knowledge.decision import TwoStepDecision

    return TwoStepDecision.of_run(view(runs, name, stamp).run)


def external_report(runs: str, name: str, stamp: str) -> dict | None:
    """RUN/external.json (`train external`: the decision on other hospitals), or None before it was written."""
    from core.audits.external import EXTERNAL_FILE

    return _run_json(view(runs, name, stamp).run.path / EXTERNAL_FILE)


def windows_report(runs: str, name: str, stamp: str) -> dict | None:
    """RUN/windows.json (`train windows`: the record on another hospital in other lung windows), or None before."""
    from core.audits.windows import WINDOWS_FILE

    return _run_json(view(runs, name, stamp).run.path / WINDOWS_FILE)


def _run_json(f: Path) -> dict | None:
    mtime = _mtime(f)
    return None if mtime is None else _json_file(str(f), mtime)


@st.cache_data(max_entries=16, show_spinner=False)
def _json_file(path: str, mtime: int) -> dict:
    import json

    return json.loads(Path(path).read_text())
