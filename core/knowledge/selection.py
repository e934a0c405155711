"""Which two-step decision a run keeps: every candidate scored on the data that choose, by one rule.

The candidates differ in what feeds the second step (core.knowledge.decision): one branch's probability
(any branch of the network: every one's direction is known, a higher p(COVID) can only raise it), with or
without the pattern signs. Each is fitted on the rows that choose (`decision.selection_rows`) and scored
there, by the rule written before any reported score existed (docs/recipes.md):

    score        the mean AUC of the two-class comparisons that choose (COVID-CT val; COVID-CT-MD's
                 selection COVID-19 patient's infected slices against its normal patient, and against its
                 pneumonia patient): each source and each kind of negative counts once
    eligible     the sensitivity on every all-COVID set that chooses (COVID-SemiSeg train) at the candidate's
                 operating point is at least SENSITIVITY_FLOOR: a decision that misses COVID-19 slices from
                 another source is not kept, whatever its AUC
    chosen       the best eligible score; a candidate within TIE of it that reads fewer inputs wins, then the
                 earlier one in CANDIDATES (the paper's decision branch, fusion, first). When no candidate is
                 eligible: the highest sensitivity, then the score.

Each branch alone and the lesion share alone are scored the same way (at the same kind of operating point) as
references, so the table shows what the two steps add; they are never chosen. The report rows (COVID-CT test,
COVID-SemiSeg test, COVID-CT-MD's other patients) take no part: the caller passes the masks that choose only.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from core.knowledge.decision import PATTERN_SIGNS, TwoStepDecision, fit_candidate, operating_point, selection_rows
from core.models.network import NAMES
from core.results.metrics import auc as roc_auc

SENSITIVITY_FLOOR = 0.90
TIE = 0.005  # scores this close are a tie: the simpler candidate wins
SIGN_OPTIONS = ((), PATTERN_SIGNS)  # the second step reads no sign, or every pattern sign
RULE = ("each candidate (what feeds the second step) fitted on the data that choose; kept: the best mean AUC of "
        f"their two-class comparisons among those finding at least {SENSITIVITY_FLOOR:.0%} of COVID-SemiSeg's train "
        f"slices, a score within {TIE} going to the candidate reading fewer inputs; each branch alone and the lesion "
        "share alone are references, never kept")  # the docstring's rule in one sentence, for the pages
LESION_SHARE = "lesion-share"  # the reference of knowledge alone: the segmenter's lesion share as a score


@dataclass(frozen=True)
class Candidate:
    pattern_branch: str
    signs: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"two-step over {self.pattern_branch}" + (" + pattern signs" if self.signs else "")

    @property
    def inputs(self) -> int:  # what it reads besides the lesion share: simpler is fewer
        return 1 + len(self.signs)


# fusion first: the paper's decision branch wins a tie among candidates as simple as it
CANDIDATES = tuple(Candidate(b, s) for s in SIGN_OPTIONS for b in ("fusion", *(n for n in NAMES if n != "fusion")))


@dataclass
class Scored:
    name: str
    kind: str  # "candidate" or "reference"
    score: float  # mean AUC of the comparisons that choose
    aucs: dict  # comparison -> AUC
    sensitivities: dict  # all-COVID comparison -> sensitivity at the operating point
    operating_point: float
    eligible: bool
    chosen: bool = False

    def row(self) -> dict:
        return asdict(self)


def _measure(name: str, kind: str, p: np.ndarray, cut: float, masks: dict) -> Scored:
    aucs, sens = {}, {}
    for comparison, (pos, neg) in masks.items():
        if neg is None:
            sens[comparison] = float((p[pos] >= cut).mean()) if pos.any() else float("nan")
        elif pos.any() and neg.any():
            aucs[comparison] = float(roc_auc(np.r_[np.ones(pos.sum()), np.zeros(neg.sum())], np.r_[p[pos], p[neg]]))
    score = float(np.mean(list(aucs.values()))) if aucs else float("nan")
    eligible = all(v >= SENSITIVITY_FLOOR for v in sens.values())
    return Scored(name, kind, score, aucs, sens, float(cut), eligible)


def _best(scored: list[tuple[Candidate, Scored]]) -> int:
    """Index of the chosen candidate in `scored` (the rule in the module's docstring)."""
    eligible = [i for i, (_, s) in enumerate(scored) if s.eligible and not np.isnan(s.score)]
    if not eligible:
        low = lambda i: min(scored[i][1].sensitivities.values(), default=0.0)
        return max(range(len(scored)), key=lambda i: (low(i), np.nan_to_num(scored[i][1].score, nan=-1.0), -i))
    top = max(scored[i][1].score for i in eligible)
    near = [i for i in eligible if scored[i][1].score >= top - TIE]
    return min(near, key=lambda i: (scored[i][0].inputs, i))


def select(rows: pd.DataFrame, masks: dict[str, tuple[pd.Series, pd.Series | None]],
           candidates=CANDIDATES) -> tuple[TwoStepDecision, pd.DataFrame]:
    """(the chosen two-step decision, the table of every candidate and reference) from a table shaped like
    core.audits.external's rows with every p_<branch> and the signs; `masks`: comparison -> (positives,
    negatives or None for an all-COVID set), boolean over `rows`, of the comparisons that choose only."""
    part, y, src = selection_rows(rows)
    masks = {k: (np.asarray(pos, bool), None if neg is None else np.asarray(neg, bool))
             for k, (pos, neg) in masks.items()}
    fitted = []
    for c in candidates:
        if f"p_{c.pattern_branch}" not in rows or rows[f"p_{c.pattern_branch}"].isna().any():
            continue
        decision = fit_candidate(rows, c.pattern_branch, c.signs)
        fitted.append((c, decision, _measure(c.name, "candidate", decision.on_table(rows)[f"p_{decision.name}"]
                                            .to_numpy(float), decision.operating_point, masks)))
    if not fitted:
        raise ValueError(f"no candidate of the two-step decision has its branch's probabilities in the rows "
                         f"(columns p_{', p_'.join(sorted({c.pattern_branch for c in candidates}))})")
    chosen = _best([(c, s) for c, _, s in fitted])
    fitted[chosen][2].chosen = True
    references = []
    for name in (*dict.fromkeys(c.pattern_branch for c, _, _ in fitted), LESION_SHARE):
        p = (rows["lesion_share"] if name == LESION_SHARE else rows[f"p_{name}"]).astype(float).fillna(0.0)
        cut = operating_point(p.loc[part.index].to_numpy(), y, src)
        references.append(_measure(f"{name} alone", "reference", p.to_numpy(), cut, masks))
    table = pd.DataFrame([s.row() for _, _, s in fitted] + [s.row() for s in references])
    return fitted[chosen][1], table


def _num(v, digits: int) -> str:
    """A stored number as text; blank where it could not be measured (NaN, or None in strict JSON)."""
    return "" if v is None or v != v else f"{float(v):.{digits}f}"


def table_text(records: list[dict]) -> pd.DataFrame:
    """The stored selection table (`select`'s, as records, also read back from strict JSON) as text columns a page
    or a report prints."""
    out = []
    for r in records:
        row = {"decision": r["name"], "": "chosen" if r["chosen"] else ("reference" if r["kind"] == "reference" else
                                                                           "" if r["eligible"] else "misses COVID"),
               "score (mean AUC)": _num(r["score"], 3)}
        row.update({f"AUC {k}": _num(v, 3) for k, v in r["aucs"].items()})
        row.update({f"sensitivity {k}": _num(v, 2) for k, v in r["sensitivities"].items()})
        row["operating point"] = _num(r["operating_point"], 3)
        out.append(row)
    return pd.DataFrame(out)
