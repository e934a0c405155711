"""The decision at a glance: the few numbers asked of a run first, each on data that chose nothing, beside the
lesion share alone (the segmenter's knowledge without a classifier). The Overview opens with them.

    rows = glance("two-step", metrics_test, external, shortcut)   # metrics_test.json's, external.json's, shortcut.json's
    table = glance_table(rows)

    COVID-CT test                  the decision's AUC on the paper's test split
    another hospital               COVID-CT-MD's report patients: slices with visible infection against normal
                                   slices and against pneumonia slices (AUC), and the scan calls right
    another source, all COVID      COVID-SemiSeg test: the share called COVID at the decision's operating point
    disease or source?             COVID-CT test AUC with the lungs blanked: near 0.5 when the decision reads the
                                   disease, not where a slice came from

A number a run has not measured yet says which command measures it.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from core.audits.external import REPORTS, against_normal

LESION_SHARE = "lesion-share"  # the reference: knowledge alone
EXTERNAL = "`python -m train external --run RUN --data-root DATA`"
SHORTCUT = "`python -m train shortcut --run RUN --data-root DATA`"


@dataclass(frozen=True)
class Headline:
    question: str
    measure: str
    value: float | None = None  # None: not measured (`missing` says how to)
    ci: tuple[float, float] | None = None
    reference: float | None = None  # the lesion share alone, same measure
    count: tuple[int, int] | None = None  # (right, of) for a count
    reference_count: tuple[int, int] | None = None
    missing: str = ""

    def reference_text(self) -> str:
        if self.reference_count is not None:
            return f"{self.reference_count[0]} of {self.reference_count[1]}"
        return "" if self.reference is None else f"{self.reference:.3f}"

    def text(self) -> str:
        if self.count is not None:
            return f"{self.count[0]} of {self.count[1]}"
        if self.value is None:
            return f"not measured yet: {self.missing}"
        return f"{self.value:.3f}" + ("" if self.ci is None else f" [{self.ci[0]:.3f}, {self.ci[1]:.3f}]")


def _ci(values) -> tuple[float, float] | None:
    return None if not values or None in values else (float(values[0]), float(values[1]))


def _auc(m: dict | None) -> tuple[float | None, tuple[float, float] | None]:
    if not m or m.get("auc") is None:
        return None, None
    return float(m["auc"]), _ci(m.get("auc_ci"))


def glance(branch: str, test: dict | None, external: dict | None, shortcut: dict | None) -> list[Headline]:
    """The headline rows of `branch` (`test`: metrics_test.json's {branch: metrics}; `external`, `shortcut`: the
    run's external.json and shortcut.json, None when not written yet)."""
    rows = []
    auc = (test or {}).get(branch, {}).get("auc")
    ref = (test or {}).get(LESION_SHARE, {}).get("auc")
    rows.append(Headline("COVID-CT test: COVID against non-COVID", "AUC", auc and auc["value"],
                         auc and _ci(auc["ci"]), ref and ref["value"],
                         missing="`python -m train evaluate --run RUN --split test`"))
    comparisons = (external or {}).get("comparisons") or {}
    normal = set(against_normal(REPORTS))
    ctmd = [n for n, c in comparisons.items() if c.get("role") == REPORTS and n.startswith("covid-ct-md")]
    for against, names in (("normal", [n for n in ctmd if n in normal]), ("pneumonia", [n for n in ctmd
                                                                                         if n not in normal])):
        question = f"Another hospital (COVID-CT-MD, held-out patients): infected slices against {against} slices"
        if not names:
            rows.append(Headline(question, "AUC", missing=EXTERNAL))
            continue
        branches = comparisons[names[0]]["branches"]
        value, ci = _auc(branches.get(branch))
        rows.append(Headline(question, "AUC", value, ci, _auc(branches.get(LESION_SHARE))[0], missing=EXTERNAL))
    patients = [p for p in ((external or {}).get("patients") or {}).values()
                if p.get("role") == REPORTS and branch in (p.get("scan_covid") or {})]
    question = "Another hospital: scan calls right, held-out patients"
    if patients:
        right = lambda b: sum(p["scan_covid"].get(b) == bool(p["label"]) for p in patients)
        known = all(LESION_SHARE in p["scan_covid"] for p in patients)
        rows.append(Headline(question, "scan calls", count=(right(branch), len(patients)),
                             reference_count=(right(LESION_SHARE), len(patients)) if known else None))
    else:
        rows.append(Headline(question, "scan calls", missing=EXTERNAL))
    semiseg = next((c["branches"] for n, c in comparisons.items() if c.get("role") == REPORTS
                    and n.startswith("semiseg")), {})
    m, r = semiseg.get(branch), semiseg.get(LESION_SHARE)
    rows.append(Headline("Another source, all COVID (COVID-SemiSeg test): called COVID at the operating point",
                         "sensitivity", m and m.get("sensitivity"), m and _ci(m.get("sensitivity_ci")),
                         r and r.get("sensitivity"), missing=EXTERNAL))
    blanked = (((shortcut or {}).get("branches") or {}).get(branch) or {}).get("lungs-blanked")
    rows.append(Headline("Disease or source? COVID-CT test with the lungs blanked (0.5: reads no source)", "AUC",
                         *(_auc(blanked) if blanked else (None, None)), missing=SHORTCUT))
    return rows


def glance_table(rows: list[Headline]) -> pd.DataFrame:
    """The rows as text: question, measure, value [95% CI], the lesion share alone."""
    return pd.DataFrame([{"question": r.question, "measure": r.measure, "decision": r.text(),
                          "lesion share alone": r.reference_text()} for r in rows])
