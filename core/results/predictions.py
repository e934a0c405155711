"""Per-slice probabilities of every branch (runs/<name>/predictions.csv) and their evaluation."""
from __future__ import annotations

import io
import json

import pandas as pd

from core.knowledge.decision import TwoStepDecision
from core.models.network import NAMES
from core.results.metrics import binary_metrics, youden_threshold
from core.runs.checkpoint import atomic_write_bytes, atomic_write_text
from core.runs.runfolder import RunError, RunFolder

# lesion-share is no branch but a baseline of knowledge alone: the share of the lung field the segmenter
# calls lesion (core.inputs.lesion_maps.lesion_share), scored like a branch so tables show it beside them.
BASELINES = ("lesion-share",)
# decisions over the branches and the knowledge (core.knowledge.decision): the last one present decides
DECISIONS = (TwoStepDecision.name,)
# predictions.csv's probability columns p_<name>: the network's branches in the paper's table order
# (core.models.network), then the decisions, then the baselines
BRANCHES = (*NAMES, *DECISIONS, *BASELINES)


def write_columns(run: RunFolder, slices, columns: dict) -> pd.DataFrame:
    """Set these columns (name -> one value per slice) for these slices; other slices and columns are kept."""
    rows = pd.DataFrame({"key": [s.key for s in slices], "split": [s.split for s in slices],
                         "label": [s.label for s in slices], "patient": [s.patient for s in slices]}).set_index("key")
    f = run.predictions_csv
    df = pd.read_csv(f, keep_default_na=False).set_index("key") if f.exists() else rows.iloc[:0]
    df = pd.concat([df, rows[~rows.index.isin(df.index)]])
    for col, values in columns.items():
        if col not in df:
            df[col] = ""
        df[col] = df[col].astype(object)
        df.loc[rows.index, col] = [float(v) for v in values]
    buf = io.StringIO()
    df.reset_index().to_csv(buf, index=False)
    atomic_write_bytes(f, buf.getvalue().encode())
    return df.reset_index()


def write_branch_probs(run: RunFolder, branch: str, slices, probs) -> pd.DataFrame:
    """Set p_<branch> for these slices; other slices and other branches' columns are kept."""
    return write_columns(run, slices, {f"p_{branch}": probs})


class NoSlicesError(RunError):
    """The predictions hold no slice of the split asked for (a run on other data): a report notes it."""


def read_predictions(run: RunFolder) -> pd.DataFrame:
    f = run.predictions_csv
    if not f.exists():
        raise FileNotFoundError(f"{f}: no predictions yet; train a branch first")
    try:
        df = pd.read_csv(f, keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunError(f"{f}: unreadable predictions file ({exc})") from None
    missing = {"key", "split", "label"} - set(df.columns)
    if missing:
        raise RunError(f"{f}: predictions file lacks columns {sorted(missing)}")
    labels = set(df["label"].astype(str))
    if not labels <= {"0", "1"}:
        raise RunError(f"{f}: labels must be 0 or 1; found {sorted(labels - {'0', '1'})[:3]}")
    for col in (c for c in df.columns if c.startswith("p_")):
        values = df[col].astype(str)
        p = pd.to_numeric(values[values != ""], errors="coerce")
        if p.isna().any() or not p.between(0, 1).all():
            bad = values[values != ""][p.isna() | ~p.between(0, 1)].iloc[0]
            raise RunError(f"{f}: column {col} holds {bad!r}; a probability lies in [0, 1] (or is blank before its "
                           "branch has trained)")
    return df.assign(label=df["label"].astype(int))


def val_threshold(df: pd.DataFrame, branch: str) -> float:
    """The operating point of a branch, chosen on the validation split only: the probability cut
    that maximises Youden's J (sensitivity + specificity - 1); 0.5 when there is no validation split."""
    val = df[df["split"] == "val"]
    col = f"p_{branch}"
    if val.empty or col not in val or (val[col] == "").any() or val["label"].nunique() < 2:
        return 0.5
    return youden_threshold(val["label"], val[col])


def operating_point(df: pd.DataFrame, branch: str, run: RunFolder) -> float:
    """Where a branch calls a slice COVID: a branch's cut is chosen on COVID-CT's validation split
    (val_threshold); a decision's on the rows of every source that choose, stored with it
    (core.knowledge.decision)."""
    if branch == TwoStepDecision.name:
        decision = TwoStepDecision.of_run(run)
        if decision is None:
            raise RunError(f"{run.path}: p_{branch} is in predictions.csv but its stage {branch}/ is missing")
        return decision.operating_point
    return val_threshold(df, branch)


REPORTED_SPLITS = ("val", "test")  # the splits the Overview reports metrics of (precompute evaluates them)


def metrics_path(run: RunFolder, split: str, threshold: str = "val"):
    """Where evaluate_run saves a split's metrics: metrics_<split>.json (metrics_<split>_t<threshold>.json)."""
    return run.path / f"metrics_{split}{'' if threshold == 'val' else f'_t{threshold}'}.json"


def evaluate_run(run: RunFolder, split: str, n_boot: int = 1000, threshold: str = "val") -> dict:
    """run_metrics, saved at metrics_path."""
    out = run_metrics(run, split, n_boot, threshold)
    atomic_write_text(metrics_path(run, split, threshold), json.dumps(out, indent=1))
    return out


def run_metrics(run: RunFolder, split: str, n_boot: int = 1000, threshold: str = "val") -> dict:
    """{branch: metrics} for every branch with predictions on `split`.

    threshold "val": each branch's operating point chosen on the data that choose (operating_point);
    "0.5": the plain sigmoid midpoint. AUC does not depend on it."""
    df = read_predictions(run)
    part = df[df["split"] == split]
    if part.empty:
        raise NoSlicesError(f"no slices of split {split!r} in {run.predictions_csv}")
    out = {}
    for b in BRANCHES:
        col = f"p_{b}"
        if col in part and (part[col] != "").all():
            t = operating_point(df, b, run) if threshold == "val" else float(threshold)
            out[b] = binary_metrics(part["label"].to_numpy(), part[col].astype(float).to_numpy(), threshold=t,
                                    n_boot=n_boot)
            out[b]["threshold"] = t
    return out
