"""The decision at a glance: the few numbers asked of a run first, each on data that chose nothing, beside the
lesion share alone (the segmenter's knowledge without a classifier). The Overview opens with them.

    rows = glance("two-step", metrics_test, external, shortcut, windows)   # metrics_test.json's, external.json's ...
    table = glance_table(rows)

    COVID-CT test                  the decision's AUC on the paper's test split, and without its slices shown in
                                   a soft-tissue window (nearly all non-COVID: the window hints at the class)
    another hospital               COVID-CT-MD's report patients: slices with visible infection against normal
                                   slices and against pneumonia slices (AUC), the lowest of those AUCs with the
                                   slices shown in other lung windows, and the scan calls right
    another source, all COVID      COVID-SemiSeg test: the share called COVID at the decision's operating point
    disease or source?             COVID-CT test AUC with the lungs blanked: near 0.5 when the decision reads the
                                   disease, not where a slice came from

A number a run has not measured yet says which command measures it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from core.audits.external import REPORTS
from core.audits.shortcut import LUNGS_READABLE
from core.audits.windows import other_windows, spread
from core.results.external_tables import auc_text
from core.trust.scan_call import record

LESION_SHARE = "lesion-share"  # the reference: knowledge alone
EXTERNAL = "`python -m train external --run RUN --data-root DATA`"
SHORTCUT = "`python -m train shortcut --run RUN --data-root DATA`"
WINDOWS = "`python -m train windows --run RUN --data-root DATA`"


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
        return auc_text(self.value, *(self.ci or (None, None)))


def _auc(m: dict | None) -> tuple[float | None, tuple[float, float] | None]:
    if not m or m.get("auc") is None:
        return None, None
    ci = m.get("auc_ci")
    return float(m["auc"]), None if not ci or None in ci else (float(ci[0]), float(ci[1]))


def _audited(shortcut: dict | None, branch: str, condition: str) -> dict | None:
    """One condition's row of `branch` in shortcut.json, None when not measured."""
    return (((shortcut or {}).get("branches") or {}).get(branch) or {}).get(condition)


def glance(branch: str, test: dict | None, external: dict | None, shortcut: dict | None,
           windows: dict | None = None) -> list[Headline]:
    """The headline rows of `branch` (`test`: metrics_test.json's {branch: metrics}; `external`, `shortcut`,
    `windows`: the run's external.json, shortcut.json and windows.json, None when not written yet)."""
    rows = []
    auc = (test or {}).get(branch, {}).get("auc")
    ref = (test or {}).get(LESION_SHARE, {}).get("auc")
    rows.append(Headline("COVID-CT test: COVID against non-COVID", "AUC", auc and auc["value"],
                         auc and tuple(auc["ci"]), ref and ref["value"],
                         missing="`python -m train evaluate --run RUN --split test`"))
    rows.append(Headline("COVID-CT test without its slices in a soft-tissue window (a cue of the class)", "AUC",
                         *_auc(_audited(shortcut, branch, LUNGS_READABLE)),
                         _auc(_audited(shortcut, LESION_SHARE, LUNGS_READABLE))[0], missing=SHORTCUT))
    held, aucs = record(external, branch)
    held_ref, aucs_ref = record(external, LESION_SHARE)
    for against in ("normal", "pneumonia"):
        question = f"Another hospital (COVID-CT-MD, held-out patients): infected slices against {against} slices"
        a = next((x for x in aucs if x.against == against), None)
        r = next((x for x in aucs_ref if x.against == against), None)
        ci = None if a is None or math.isnan(a.low) else (a.low, a.high)
        rows.append(Headline(question, "AUC", a and a.auc, ci, r and r.auc, missing=EXTERNAL))
    others = other_windows(windows)
    shown = f"in {others} other lung windows" if others else "in other lung windows"
    for against in ("normal", "pneumonia"):
        low, ref = spread(windows, branch, against), spread(windows, LESION_SHARE, against)
        rows.append(Headline(f"Another hospital, its slices {shown}: infected against {against} slices",
                             "lowest AUC", low and low[1], None, ref and ref[1], missing=WINDOWS))
    question = "Another hospital: scan calls right, held-out patients"
    if held:
        same = [h.patient for h in held] == [h.patient for h in held_ref]
        rows.append(Headline(question, "scan calls", count=(sum(h.right for h in held), len(held)),
                             reference_count=(sum(h.right for h in held_ref), len(held)) if same else None))
    else:
        rows.append(Headline(question, "scan calls", missing=EXTERNAL))
    comparisons = (external or {}).get("comparisons") or {}
    semiseg = next((c["branches"] for n, c in comparisons.items() if c.get("role") == REPORTS
                    and n.startswith("semiseg")), {})
    m, r = semiseg.get(branch), semiseg.get(LESION_SHARE)
    rows.append(Headline("Another source, all COVID (COVID-SemiSeg test): called COVID at the operating point",
                         "sensitivity", m and m.get("sensitivity"),
                         m and m.get("sensitivity_ci") and tuple(m["sensitivity_ci"]),
                         r and r.get("sensitivity"), missing=EXTERNAL))
    rows.append(Headline("Disease or source? COVID-CT test with the lungs blanked (0.5: reads no source)", "AUC",
                         *_auc(_audited(shortcut, branch, "lungs-blanked")), missing=SHORTCUT))
    return rows


def glance_table(rows: list[Headline]) -> pd.DataFrame:
    """The rows as text: question, measure, value [95% CI], the lesion share alone."""
    return pd.DataFrame([{"question": r.question, "measure": r.measure, "decision": r.text(),
                          "lesion share alone": r.reference_text()} for r in rows])
