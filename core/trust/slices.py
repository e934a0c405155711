"""Every slice's prediction set and out-of-distribution flag over a table of slices, and their rates per source.

The dashboard's pages show them (core.trust.conformal fits the sets, core.trust.ood the flag); this module turns
them into columns of a predictions table and into the per-source tables of the "Does it look at the disease?"
page. Sources: COVID-CT's test split (the run's predictions.csv) and, once the run's external slices are scored
(RUN/external.csv, core.audits.external's rows: source, group, role, label, diagnosis, infection_visible,
p_<branch>, and the flag's columns core.trust.ood.COLUMNS when it was measured), the slices
those sources only report on. Of COVID-CT-MD's COVID-19 patient only the slices with infection marked count as
COVID: the others carry the scan's label, not the slice's.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.audits.external import REPORTS
from core.trust.conformal import CLASSES, PredictionSets
from core.trust.conformal import fit_run as fit_sets
from core.trust.image_check import VERSION as IMAGE_CHECK_VERSION
from core.trust.ood import ALPHA, COLUMNS, FLAG_COLUMN, OodFlag, run_statistics
from core.trust.ood import fit_run as fit_flag

# A set as the pages name it: both classes is the honest answer near the margin, none that the slice scores
# like neither class's calibration slices.
SET_LABELS = {(): "{}", ("non-COVID",): "{non-COVID}", ("COVID",): "{COVID}", ("non-COVID", "COVID"):
              "{COVID, non-COVID}"}  # both classes named: what the set holds, not a shorthand
TWO_CLASS = SET_LABELS[CLASSES]
OOD_LABEL, IN_LABEL = "unlike the slices this run was trained on", "like the slices this run was trained on"
SOURCE_NAMES = {"covid-ct": "COVID-CT", "semiseg": "COVID-SemiSeg", "covid-ct-md": "COVID-CT-MD"}


def set_labels(sets: np.ndarray) -> list[str]:
    """SET_LABELS of each row of a (n, 2) bool array [non-COVID in the set, COVID in the set]."""
    return [SET_LABELS[tuple(CLASSES[c] for c in (0, 1) if row[c])] for row in np.asarray(sets, bool)]


def with_sets(df: pd.DataFrame, sets: PredictionSets, branch: str) -> pd.DataFrame:
    """`df` (rows with p_<branch>) with column `set`: each slice's prediction set at the sets' level."""
    col = f"p_{branch}"
    if col not in df:
        raise KeyError(f"no {branch} probabilities (column {col}) to give prediction sets for")
    return df.assign(set=set_labels(sets.sets(df[col].astype(float).to_numpy())))


def slice_flags(flag: OodFlag, run, vectors: np.ndarray, keys: list[str]) -> pd.DataFrame:
    """key and core.trust.ood.COLUMNS (ood True: unlike the training slices) of each slice of a run's feature
    cache (`run`: its folder, whose data location holds the slices)."""
    return flag.assess(vectors, run_statistics(run, list(keys))).assign(key=list(keys))


FLAGS_VERSION = 1  # bump when the flag's rule or columns change: part of the stored table's key


def flag_alpha(trust: dict) -> float:
    """The flag's false-alarm level for a run whose trust.json holds `trust`: the level `train trust` measured
    the flag with, else core.trust.ood.ALPHA."""
    return float((trust.get("ood") or {}).get("alpha", ALPHA))


def stored_slice_flags(view, alpha: float, fit) -> pd.DataFrame:
    """slice_flags of every slice of a run's feature cache (`view`: its core.runs.run_view.RunView) at `alpha`,
    kept in that cache: the pipeline's precompute stage stores it, so a page's first visit reads a table instead
    of fitting the flag and checking every slice (about a second on the real data). `fit()` gives the run's
    OodFlag at `alpha`; it is called only when the table is not stored yet."""
    def compute() -> dict:
        table = slice_flags(fit(), view.run, view.features("fusion"), view.feature_keys)
        return {c: table[c].tolist() for c in ("key", *COLUMNS)}

    parts = {"alpha": float(alpha), "version": FLAGS_VERSION, "image_check": IMAGE_CHECK_VERSION}
    return pd.DataFrame(view.derived("ood-flags", parts, compute))


def run_slice_flags(view, trust: dict) -> pd.DataFrame:
    """stored_slice_flags at the level the run's trust.json (`trust`) measured the flag with, the run's flag fitted
    only when the table is not stored (the precompute stage and `train report`; the dashboard fits through its
    cached resource instead)."""
    alpha = flag_alpha(trust)
    return stored_slice_flags(view, alpha, lambda: fit_flag(view.run, alpha))


def _reported(external: pd.DataFrame) -> pd.DataFrame:
    """The external rows that are only reported, each with `source_name` and `class` (COVID-CT-MD: its diagnosis;
    its COVID-19 patient's slices only where infection was marked)."""
    part = external[(external["role"] == REPORTS) & (external["source"] != "covid-ct")]  # COVID-CT: the run's own rows
    md, covid = part["source"] == "covid-ct-md", part["label"].astype(int) == 1
    part = part[~md | ~covid | (part["infection_visible"].astype(float) == 1)]
    names, classes = [], []
    for source, group, label, diagnosis in zip(part["source"], part["group"], part["label"], part["diagnosis"]):
        if source == "covid-ct-md":
            names.append(SOURCE_NAMES[source])
            classes.append(f"{diagnosis} (infection marked)" if int(label) == 1 else str(diagnosis))
        else:
            names.append(f"{SOURCE_NAMES.get(source, source)} {group}")
            classes.append(CLASSES[int(label)])
    return part.assign(source_name=names, **{"class": classes})


def _covidct_test(df: pd.DataFrame) -> pd.DataFrame:
    part = df[df["split"] == "test"]
    return part.assign(source_name="COVID-CT test", **{"class": [CLASSES[int(v)] for v in part["label"]]})


def _per_group(rows: pd.DataFrame, measure) -> list[dict]:
    out = []
    for (source, cls), part in rows.groupby(["source_name", "class"], sort=False):
        out.append({"source": source, "class": cls, "n": len(part), **measure(part)})
    return out


def coverage_table(sets: PredictionSets, branch: str, predictions: pd.DataFrame,
                   external: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per source and class: n, coverage (share of slices whose set holds their class), the shares of two-class
    and of empty sets. COVID-CT test first, then the external sources that were scored."""
    col = f"p_{branch}"
    frames = [_covidct_test(predictions)]
    if external is not None:
        if col not in external:
            raise KeyError(f"the external rows have no {branch} probabilities (column {col})")
        frames.append(_reported(external))

    def measure(part):
        s = sets.sets(part[col].astype(float).to_numpy())
        y = part["label"].astype(int).to_numpy()
        size = s.sum(1)
        return {"coverage": float(s[np.arange(len(y)), y].mean()), "two-class share": float((size == 2).mean()),
                "empty share": float((size == 0).mean())}

    rows = [r for f in frames for r in _per_group(f, measure)]
    return pd.DataFrame(rows, columns=["source", "class", "n", "coverage", "two-class share", "empty share"])


def flag_table(flags: pd.DataFrame, predictions: pd.DataFrame,
               external: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per source and class: n and the share flagged "unlike the training slices". COVID-CT test from `flags`
    (slice_flags of the run's own slices), the external sources from their flag column when it was measured."""
    test = _covidct_test(predictions).merge(flags, on="key")
    frames = [test]
    if external is not None and FLAG_COLUMN in external:
        frames.append(_reported(external))
    share = lambda part: {"flagged": float(part[FLAG_COLUMN].astype(bool).mean())}
    rows = [r for f in frames for r in _per_group(f, share)]
    return pd.DataFrame(rows, columns=["source", "class", "n", "flagged"])


def source_tables(view, trust: dict, external: pd.DataFrame | None) -> dict[str, pd.DataFrame]:
    """A run's per-source tables at the settings its trust.json (`trust`) was measured with, as `train report` writes
    them: "sets" (coverage_table of that branch and level) when it holds a sets part, "flag" (flag_table at its
    alpha) when it holds an ood part. `view`: the run's core.runs.run_view.RunView; `external`: its external rows."""
    out = {}
    if trust.get("sets"):
        branch, level = trust["sets"]["branch"], float(trust["sets"]["level"])
        out["sets"] = coverage_table(fit_sets(view.run, branch, level), branch, view.predictions, external)
    if trust.get("ood"):
        out["flag"] = flag_table(run_slice_flags(view, trust), view.predictions, external)
    return out
