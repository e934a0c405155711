"""The external report (RUN/external.json, core.audits.external) as tables a page or a report prints: which
data chose and which only report, per comparison and branch AUC [95% CI] with sensitivity and specificity at
the branch's operating point, and per COVID-CT-MD patient the scan-level score and call. `train report` and
the "Does it look at the disease?" page both print these, so they say the same."""
from __future__ import annotations

import math

import pandas as pd

from core.audits.external import CHOOSES, ROLES, table_rows
from core.knowledge.decision import TwoStepDecision
from core.trust.slices import SOURCE_NAMES

GROUP_NAMES = {("covid-ct", "val"): "validation split", ("covid-ct", "test"): "test split",
               ("semiseg", "train"): "labelled train slices", ("semiseg", "test"): "labelled test slices"}
COMPARISON_COLUMNS = ("comparison", "branch", "slices (COVID / other)", "AUC [95% CI]", "sensitivity",
                      "specificity", "operating point")


def role_data(role: str) -> str:
    """The data of a role (core.audits.external.ROLES) in words: 'COVID-CT validation split, COVID-SemiSeg labelled
    train slices (all COVID), COVID-CT-MD patients P001, normal001, cap001'."""
    groups: dict[str, list[str]] = {}
    for (source, group), r in ROLES.items():
        if r == role:
            groups.setdefault(source, []).append(group)
    parts = []
    for source, gs in groups.items():
        name = SOURCE_NAMES.get(source, source)
        if source == "covid-ct-md":
            parts.append(f"{name} patients {', '.join(gs)}")
        else:
            parts.append(f"{name} {', '.join(GROUP_NAMES.get((source, g), g) for g in gs)}"
                         + (" (all COVID)" if source == "semiseg" else ""))
    return "; ".join(parts)


def chosen_on(branch: str) -> str:
    """Where `branch`'s operating point was chosen (core.results.predictions.operating_point), in words: a branch's
    on COVID-CT's validation split, the two-step decision's on the data that choose of every source."""
    return f"the data that choose ({role_data(CHOOSES)})" if branch == TwoStepDecision.name else \
        "COVID-CT's validation split"


def _num(v, digits: int = 3) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{float(v):.{digits}f}"


def auc_text(auc, low, high) -> str:
    """'0.912 [0.861, 0.955]'; the AUC alone without an interval, blank without an AUC."""
    text = _num(auc)
    return text + f" [{_num(low)}, {_num(high)}]" if text and low is not None else text


def comparison_table(result: dict, role: str) -> pd.DataFrame:
    """One row per comparison of `role` and branch (core.audits.external.table_rows), as text: an all-COVID set
    (COVID-SemiSeg) has a sensitivity only."""
    rows = []
    for r in table_rows(result):
        if r["role"] != role:
            continue
        rows.append(dict(zip(COMPARISON_COLUMNS, (
            r["comparison"], r["branch"], f"{r['n_pos']} / {r['n_neg']}",
            auc_text(r["auc"], r["auc_low"], r["auc_high"]),
            _num(r["sensitivity"]), _num(r["specificity"]), _num(result.get("thresholds", {}).get(r["branch"]))))))
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


def call(score, threshold) -> str:
    """A scan-level score and its call at the operating point: '0.766 COVID'; blank without a score."""
    if score is None or (isinstance(score, float) and math.isnan(score)):
        return ""
    return f"{score:.3f} {'COVID' if score >= threshold else 'non-COVID'}"


def patient_table(result: dict, role: str) -> pd.DataFrame:
    """One row per COVID-CT-MD patient of `role`: diagnosis, slices, then per branch the scan-level score (the
    statistic of result['rule'] over its slices) and its call at the branch's operating point."""
    thresholds = result.get("thresholds", {})
    rows = []
    for patient, p in result.get("patients", {}).items():
        if p["role"] != role:
            continue
        row = {"patient": patient, "diagnosis": p["diagnosis"], "slices": p["slices"]}
        row.update({b: call(v, thresholds.get(b, math.nan)) for b, v in p["scan_statistic"].items()})
        rows.append(row)
    return pd.DataFrame(rows)


DISEASE_COLUMNS = ("slices", "marked / not", "AUC of p(disease present) [95% CI]", "marked slices let through",
                   "unmarked slices cleared by step 1 alone")


def disease_title(result: dict) -> str:
    """What `disease_table` shows, in one sentence."""
    return ("How far step 1 can be trusted: p(disease present), from the segmenter's lesion share, against the slices "
            "the radiologists marked infected (COVID-SemiSeg: every labelled slice holds a lesion); at the decision's "
            f"operating point {result['disease_step']['cut']:.3f}: below it no step 2 can call a slice COVID")


def disease_table(result: dict, role: str) -> pd.DataFrame:
    """The first step of the two-step decision against the radiologists' marks (result['disease_step'],
    core.audits.external.disease_report) for `role`, as text: its AUC, and at the operating point the share of
    marked slices it lets through to step 2 and of unmarked slices it alone clears."""
    rows = []
    for name, m in ((result.get("disease_step") or {}).get("comparisons") or {}).items():
        if m["role"] != role:
            continue
        low, high = m.get("auc_ci") or (None, None)
        rows.append(dict(zip(DISEASE_COLUMNS, (name, f"{m['n_pos']} / {m['n_neg']}", auc_text(m.get("auc"), low, high),
                                               _num(m["sensitivity"], 2), _num(m.get("specificity"), 2)))))
    return pd.DataFrame(rows, columns=list(DISEASE_COLUMNS))
