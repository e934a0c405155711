"""Does the decision carry over to other hospitals? Every branch on the sources beside COVID-CT.

Each source has slices that choose (recipes, weights, operating points are picked on them) and slices
that are only reported, named here once (`ROLES`):

    source        chooses                           reports
    covid-ct      validation split                  test split
    semiseg       labelled train slices (COVID)     labelled test slices (COVID)
    covid-ct-md   P001, normal001, cap001           P002, normal002, cap002  (core.data.ctmd)

COVID-SemiSeg is all COVID: it measures sensitivity at each branch's operating point. COVID-CT-MD, a third
hospital with three diagnoses, is compared as the project's issue asks: the COVID-19 patient's slices on
which the radiologists marked infection against every slice of the normal patient, and against every
slice of the community-acquired pneumonia (CAP) patient; and per patient the scan-level score of
core.knowledge.scan's RULE. Intervals: bootstrap over slices for AUC (slices of one patient are not
independent, so these intervals are too narrow), Wilson for proportions.

`score` runs the whole trained pipeline on each external slice (core.knowledge.scan.slice_row: the
run's own preprocessing, every branch, the radiological signs); COVID-CT's rows come from the run's
predictions.csv. `report` turns the rows into the per-source, per-patient tables (`train external`).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from core.config import PipelineConfig
from core.data import ctmd
from core.data.imaging import read_slice
from core.data.semiseg import read_labelled
from core.explain.fidelity import clean
from core.inference import TrainedRun
from core.knowledge.decision import FACTOR_COLUMNS, TwoStepDecision
from core.knowledge.selection import RULE as SELECTION_RULE, select
from core.knowledge.signs import SIGNS, SIGNS_VERSION
from core.results.metrics import binary_metrics, wilson
from core.results.predictions import BRANCHES, operating_point, read_predictions, write_columns
from core.runs.checkpoint import atomic_write_text
from core.runs.feature_cache import key_of
from core.runs.runfolder import RunError
from core.trust import ood
from core.trust.store import checkpoints

EXTERNAL_FILE = "external.json"  # the report `train external` writes into the run folder
ROWS_FILE = "external.csv"  # the scored rows behind it
CHOOSES, REPORTS = "chooses", "reports"
ROLES = {("covid-ct", "val"): CHOOSES, ("covid-ct", "test"): REPORTS,
         ("semiseg", "train"): CHOOSES, ("semiseg", "test"): REPORTS,
         **{("covid-ct-md", p): CHOOSES for p in ctmd.SELECTION}, **{("covid-ct-md", p): REPORTS for p in ctmd.REPORT}}
N_BOOT = 1000


@dataclass(frozen=True)
class ExternalSlice:
    source: str  # semiseg or covid-ct-md
    group: str  # split (semiseg) or patient (covid-ct-md)
    key: str
    path: str
    label: int  # 1 COVID-19
    diagnosis: str = "COVID-19"
    infection_visible: float = math.nan  # COVID-CT-MD's slice label (1 marked, 0 not; NaN: none given)
    position_mm: float = math.nan

    @property
    def role(self) -> str:
        return ROLES[(self.source, self.group)]


def external_slices(data_root) -> list[ExternalSlice]:
    """COVID-SemiSeg's labelled slices and every COVID-CT-MD slice (DataError when a set is missing)."""
    out = [ExternalSlice("semiseg", split, s.key, str(s.image), 1)
           for split in ("train", "test") for s in read_labelled(data_root, split)]
    for r in ctmd.read_ctmd(data_root):
        visible = math.nan if r.infection_visible is None else float(r.infection_visible)
        out.append(ExternalSlice("covid-ct-md", r.patient, f"covid-ct-md/{r.file}", str(r.path),
                                 ctmd.LABELS[r.diagnosis], r.diagnosis, visible, float(r.slice_location)))
    return out


def score(tr, slices: list[ExternalSlice], progress=None, ood=None) -> pd.DataFrame:
    """One row per slice: what it is (ExternalSlice's fields and its role), every branch's p(COVID) and the
    radiological signs, from the trained run `tr` (core.inference.TrainedRun); with `ood` (a fitted
    core.trust.ood.OodFlag) its out-of-distribution assessment too (core.trust.ood.COLUMNS)."""
    from core.knowledge.scan import slice_row
    from core.trust.image_check import measure

    rows = []
    for i, s in enumerate(slices):
        img = read_slice(s.path)
        a = tr.analyse(img)
        row = {**asdict(s), "role": s.role, **slice_row(tr, img, None, a)}
        if ood is not None:
            row.update(ood.assess(tr.fusion_vector(a)[None], [measure(img)]).iloc[0].to_dict())
        rows.append(row)
        if progress is not None:
            progress(i + 1, len(slices))
    return pd.DataFrame(rows)


def covidct_rows(predictions: pd.DataFrame) -> pd.DataFrame:
    """COVID-CT's validation and test rows of a run's predictions.csv, shaped like `score`'s rows."""
    part = predictions[predictions.split.isin(("val", "test"))]
    return part.assign(source="covid-ct", group=part.split, role=[ROLES[("covid-ct", s)] for s in part.split],
                       diagnosis=np.where(part.label == 1, "COVID-19", "non-COVID"))


# ------------------------------------------------------------------------------------------- comparisons

def _infected_vs(covid: str, other: str) -> str:
    return f"covid-ct-md {covid} infected vs {other}"


def comparisons(rows: pd.DataFrame) -> dict[str, tuple[str, pd.Series, pd.Series | None]]:
    """name -> (role, positives, negatives or None for an all-COVID set): boolean masks over `rows`."""
    src, grp = rows["source"], rows["group"]
    out = {}
    for split in ("val", "test"):
        here = (src == "covid-ct") & (grp == split)
        out[f"covid-ct {split}"] = (ROLES[("covid-ct", split)], here & (rows.label == 1), here & (rows.label == 0))
    for split in ("train", "test"):
        out[f"semiseg {split}"] = (ROLES[("semiseg", split)], (src == "semiseg") & (grp == split), None)
    for role, (covid, normal, cap) in ((CHOOSES, ctmd.SELECTION), (REPORTS, ctmd.REPORT)):
        infected = (src == "covid-ct-md") & (grp == covid) & (rows.infection_visible == 1)
        for other in (normal, cap):
            out[_infected_vs(covid, other)] = (role, infected, (src == "covid-ct-md") & (grp == other))
    return out


def choosing(rows: pd.DataFrame) -> dict[str, tuple[pd.Series, pd.Series | None]]:
    """The comparisons that choose (`comparisons` of role CHOOSES): name -> (positives, negatives or None)."""
    return {name: (pos, neg) for name, (role, pos, neg) in comparisons(rows).items() if role == CHOOSES}


def against_normal(role: str) -> tuple[str, ...]:
    """The names of `role`'s comparisons (`comparisons`) against a normal patient's lungs."""
    covid, normal, _ = ctmd.SELECTION if role == CHOOSES else ctmd.REPORT
    return (_infected_vs(covid, normal),)


def disease_comparisons(rows: pd.DataFrame) -> dict[str, tuple[str, pd.Series, pd.Series | None]]:
    """The first step against what the radiologists marked, per role: COVID-CT-MD's slices marked infected (its
    COVID-19 and CAP patients) against every slice not marked (those patients' others, every normal patient's
    slice); COVID-SemiSeg's labelled slices as positives only (every one of their doctors' masks holds a lesion:
    tests/test_realdata.py checks it). name -> (role, positives, negatives or None), boolean masks over `rows`."""
    src, grp = rows["source"], rows["group"]
    out = {}
    for split in ("train", "test"):
        out[f"semiseg {split}: every slice holds a lesion"] = (ROLES[("semiseg", split)],
                                                               (src == "semiseg") & (grp == split), None)
    for role, patients in ((CHOOSES, ctmd.SELECTION), (REPORTS, ctmd.REPORT)):
        here = (src == "covid-ct-md") & grp.isin(patients)
        marked = here & (rows.infection_visible == 1)
        out[f"covid-ct-md {', '.join(patients)}: marked infected vs not"] = (role, marked, here & ~marked)
    return out


def disease_report(rows: pd.DataFrame, cut: float) -> dict:
    """{"cut": cut, "comparisons": per `disease_comparisons` entry the first factor's AUC [95% CI], and at `cut`
    (the decision's operating point: p = D x C with C <= 1, so a slice whose D falls below it is non-COVID whatever
    step 2 says) the share of marked slices step 1 lets through (sensitivity) and of unmarked slices it alone
    clears (specificity)}; {} when the rows hold no first factor (no two-step decision fitted)."""
    column = FACTOR_COLUMNS[0]
    if column not in rows or rows[column].isna().all():
        return {}
    d = rows[column].astype(float)
    return {"cut": float(cut), "comparisons": {
        name: {"role": role, **_one(d[pos].to_numpy(), None if neg is None else d[neg].to_numpy(), cut)}
        for name, (role, pos, neg) in disease_comparisons(rows).items() if pos.any()}}


def _one(pos: np.ndarray, neg: np.ndarray | None, threshold: float) -> dict:
    if neg is None:  # all COVID: sensitivity at the operating point
        hits = int((pos >= threshold).sum())
        return {"n_pos": len(pos), "n_neg": 0, "sensitivity": hits / len(pos) if len(pos) else math.nan,
                "sensitivity_ci": wilson(hits, len(pos)), "mean_p": float(pos.mean()) if len(pos) else math.nan}
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    m = binary_metrics(y, np.r_[pos, neg], threshold=threshold, n_boot=N_BOOT)
    tp, tn = int((pos >= threshold).sum()), int((neg < threshold).sum())
    return {"n_pos": len(pos), "n_neg": len(neg), "auc": m["auc"]["value"], "auc_ci": m["auc"]["ci"],
            "sensitivity": tp / len(pos) if len(pos) else math.nan, "sensitivity_ci": wilson(tp, len(pos)),
            "specificity": tn / len(neg) if len(neg) else math.nan, "specificity_ci": wilson(tn, len(neg))}


def report(rows: pd.DataFrame, thresholds: dict[str, float], branches: list[str]) -> dict:
    """Per comparison (`comparisons`) and branch: AUC [95% CI], sensitivity and specificity at the branch's
    operating point; per COVID-CT-MD patient: the scan-level statistic of core.knowledge.scan.RULE per
    branch and its decision at the operating point."""
    from core.knowledge.scan import RULE

    out = {"comparisons": {}, "patients": {}, "thresholds": thresholds, "rule": RULE.name}
    for name, (role, pos, neg) in comparisons(rows).items():
        if not pos.any():
            continue
        entry = {"role": role, "branches": {}}
        for b in branches:
            col = f"p_{b}"
            p = rows[col].astype(float)
            entry["branches"][b] = _one(p[pos].to_numpy(), None if neg is None else p[neg].to_numpy(),
                                        thresholds[b])
        out["comparisons"][name] = entry
    md = rows[rows["source"] == "covid-ct-md"]
    for patient, part in md.groupby("group"):
        table = part.assign(index=np.arange(len(part)))
        stats = {b: RULE.statistic(table, b) for b in branches}
        out["patients"][patient] = {"role": ROLES[("covid-ct-md", patient)], "diagnosis": part.diagnosis.iloc[0],
                                    "label": int(part.label.iloc[0]), "slices": len(part),
                                    "scan_statistic": stats,
                                    "scan_covid": {b: (None if math.isnan(v) else bool(v >= thresholds[b]))
                                                   for b, v in stats.items()}}
    return out


def table_rows(result: dict) -> list[dict]:
    """One flat row per comparison and branch: what a table or a page shows."""
    rows = []
    for name, entry in result["comparisons"].items():
        for b, m in entry["branches"].items():
            rows.append({"comparison": name, "role": entry["role"], "branch": b, "n_pos": m["n_pos"],
                         "n_neg": m["n_neg"], "auc": m.get("auc"), "auc_low": (m.get("auc_ci") or [None])[0],
                         "auc_high": (m.get("auc_ci") or [None, None])[1], "sensitivity": m["sensitivity"],
                         "specificity": m.get("specificity")})
    return rows


# ------------------------------------------------------------------------------------------- one run

def rows_key(run, slices: list[ExternalSlice]) -> dict:
    """What the scored external rows depend on: the run's checkpoints, how its inputs are framed (the lung field's
    algorithm), what the signs measure, and the external slices' listing."""
    listing = "\n".join(sorted(f"{s.key} {s.label} {s.infection_visible}" for s in slices))
    return {"checkpoints": checkpoints(run), "input": PipelineConfig.of_run(run).input_version, "signs": SIGNS_VERSION,
            "listing": hashlib.sha256(listing.encode()).hexdigest()[:16],
            "ood": ood.COLUMNS}


def scored_rows(run, data_root, progress=None, device="cpu") -> tuple[pd.DataFrame, str]:
    """(the external slices scored by the run's branches (`score`), their key): read back from ROWS_FILE when
    nothing they depend on changed (the key is kept in EXTERNAL_FILE), else scored again."""
    slices = external_slices(data_root)
    key = key_of(rows_key(run, slices))
    try:
        if json.loads((run.path / EXTERNAL_FILE).read_text()).get("rows_key") == key:
            rows = pd.read_csv(run.path / ROWS_FILE)
            rows = rows[rows["source"] != "covid-ct"]
            if sorted(rows["key"].astype(str)) == sorted(s.key for s in slices):  # every slice, once: not cut short
                return rows.drop(columns=[c for c in DERIVED if c in rows]), key
    except (OSError, ValueError, KeyError):
        pass  # no report yet, or one that cannot be read: score again
    tr = TrainedRun.load(run.path, device=device)
    tr.two_step = None  # the network's branches alone: the decision is fitted on these rows next
    return score(tr, slices, progress, ood.fit_run(run)), key


def run_external(run, data_root, fit: bool, progress=None, log=print, device="cpu") -> dict:
    """Score the external sources with the run; when `fit`, fit its two-step decision on the rows that choose
    (core.knowledge.decision: saved in the run's stage folder, its columns written into predictions.csv); then
    write the report (EXTERNAL_FILE) and the rows behind it (ROWS_FILE). COVID-CT's rows must carry the signs
    (the pipeline's signs stage)."""
    preds = numeric(read_predictions(run))
    missing = [s for s in SIGNS if s not in preds]
    if missing:
        raise RunError(f"{run.predictions_csv}: no radiological signs ({', '.join(missing)}): run the pipeline "
                       f"(`python -m train pipeline ... --resume`) to add them")
    ext, key = scored_rows(run, data_root, progress, device)
    rows = numeric(pd.concat([covidct_rows(preds.drop(columns=[c for c in DERIVED if c in preds])), ext],
                             ignore_index=True))
    if fit:
        decision, table = select(rows, choosing(rows), normal=against_normal(CHOOSES))
        selection, rule = table.to_dict("records"), SELECTION_RULE
        decision.save(run, {"selection": selection, "selection_rule": rule})
        identities = preds[["key", "split", "label", "patient"]].itertuples(index=False)  # as write_columns reads slices
        write_columns(run, list(identities), {c: v.to_numpy() for c, v in decision.on_table(preds).items()})
        log(f"two-step: {table[table.chosen].name.iloc[0]} chosen on the data that choose, fitted on "
            f"{decision.fitted_on}; operating point {decision.operating_point:.3f}")
    else:
        decision = TwoStepDecision.of_run(run)  # the one fitted before, if any, and how it was chosen
        saved = TwoStepDecision.saved(run)
        selection, rule = saved.get("selection"), saved.get("selection_rule")
    if decision is not None:
        rows = pd.concat([rows, decision.on_table(rows)], axis=1)
    preds = read_predictions(run)
    branches = [b for b in BRANCHES if f"p_{b}" in rows and rows[f"p_{b}"].notna().all()]
    result = {**report(rows, {b: operating_point(preds, b, run) for b in branches}, branches), "rows_key": key,
              "selection": selection, "selection_rule": rule,
              "disease_step": {} if decision is None else disease_report(rows, decision.operating_point)}
    atomic_write_text(run.path / ROWS_FILE, rows.to_csv(index=False))
    atomic_write_text(run.path / EXTERNAL_FILE, json.dumps(clean(result), indent=1))
    return result


def numeric(table: pd.DataFrame) -> pd.DataFrame:
    """The probability and sign columns as numbers (predictions.csv keeps a missing value as '')."""
    cols = [c for c in (*SIGNS, *(f"p_{b}" for b in BRANCHES)) if c in table]
    return table.assign(**{c: pd.to_numeric(table[c], errors="coerce") for c in cols})


DERIVED = (f"p_{TwoStepDecision.name}", *FACTOR_COLUMNS)  # the columns the decision adds to the rows
