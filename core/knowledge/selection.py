"""Which two-step decision a run keeps: every candidate scored on the data that choose, by one rule.

The candidates differ in what feeds the second step (core.knowledge.decision): one branch's probability
(any branch of the network: every one's direction is known, a higher p(COVID) can only raise it), with or
without the pattern signs. Each is fitted on the rows that choose (`decision.selection_rows`) and scored
there, by the rule of docs/recipes.md (written before any reported score existed; its lesion-share condition was
added after three runs had been reported, and recipes.md says what that changed):

    score        the mean AUC of the two-class comparisons that choose (COVID-CT val; COVID-CT-MD's
                 selection COVID-19 patient's infected slices against its normal patient, and against its
                 pneumonia patient): each source and each kind of negative counts once
    eligible     the sensitivity on every all-COVID set that chooses (COVID-SemiSeg train) at the candidate's
                 operating point is at least SENSITIVITY_FLOOR: a decision that misses COVID-19 slices from
                 another source is not kept, whatever its AUC; and on every comparison against normal lungs that
                 chooses (COVID-CT-MD's P001 infected against normal001) its AUC falls at most LESION_MARGIN under
                 the lesion share's alone: the second step may not lose what the first step's knowledge finds
                 between disease and healthy lungs (the project's issue 26 asks this of the reported patients)
    chosen       the best eligible score; a candidate within TIE of it that reads fewer inputs wins, then the
                 earlier one in CANDIDATES (the paper's decision branch, fusion, first). When no candidate is
                 eligible: the one failing fewest conditions, then the highest sensitivity, then the score.

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
LESION_MARGIN = 0.02  # against normal lungs, how far under the lesion share alone a candidate's AUC may fall
TIE = 0.005  # scores this close are a tie: the simpler candidate wins
SIGN_OPTIONS = ((), PATTERN_SIGNS)  # the second step reads no sign, or every pattern sign
RULE = ("each candidate (what feeds the second step) fitted on the data that choose; kept: the best mean AUC of "
        f"their two-class comparisons among those that find at least {SENSITIVITY_FLOOR:.0%} of COVID-SemiSeg's train "
        f"slices and fall at most {LESION_MARGIN} under the lesion share alone against normal lungs, a score within "
        f"{TIE} going to the candidate reading fewer inputs; each branch alone and the lesion share alone are "
        "references, never kept")  # the docstring's rule in one sentence, for the pages
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
    under_lesion_share: float = float("nan")  # the largest AUC shortfall against the lesion share alone (normal lungs)
    fails: tuple[str, ...] = ()  # the conditions of eligibility it fails (MISSES_COVID, UNDER_LESION_SHARE)
    chosen: bool = False

    def row(self) -> dict:
        return asdict(self)


MISSES_COVID, UNDER_LESION_SHARE = "misses COVID", "under lesion share"  # what makes a candidate ineligible


def _measure(name: str, kind: str, p: np.ndarray, cut: float, masks: dict, lesion: dict | None = None) -> Scored:
    """Scored AUCs and sensitivities of `p` at `cut`; `lesion`: comparison -> the lesion share's AUC alone, for the
    comparisons against normal lungs (falling more than LESION_MARGIN under it fails)."""
    aucs, sens = {}, {}
    for comparison, (pos, neg) in masks.items():
        if neg is None:
            sens[comparison] = float((p[pos] >= cut).mean()) if pos.any() else float("nan")
        elif pos.any() and neg.any():
            aucs[comparison] = float(roc_auc(np.r_[np.ones(pos.sum()), np.zeros(neg.sum())], np.r_[p[pos], p[neg]]))
    score = float(np.mean(list(aucs.values()))) if aucs else float("nan")
    gaps = [reference - aucs[c] for c, reference in (lesion or {}).items() if c in aucs]
    under = max(gaps) if gaps else float("nan")
    fails = ((MISSES_COVID,) if any(v < SENSITIVITY_FLOOR for v in sens.values()) else ()) + (
        (UNDER_LESION_SHARE,) if under > LESION_MARGIN else ())
    return Scored(name, kind, score, aucs, sens, float(cut), not fails, under, fails)


def _best(scored: list[tuple[Candidate, Scored]]) -> int:
    """Index of the chosen candidate in `scored` (the rule in the module's docstring)."""
    eligible = [i for i, (_, s) in enumerate(scored) if s.eligible and not np.isnan(s.score)]
    if not eligible:
        low = lambda i: min(scored[i][1].sensitivities.values(), default=0.0)
        return max(range(len(scored)), key=lambda i: (-len(scored[i][1].fails), low(i),
                                                      np.nan_to_num(scored[i][1].score, nan=-1.0), -i))
    top = max(scored[i][1].score for i in eligible)
    near = [i for i in eligible if scored[i][1].score >= top - TIE]
    return min(near, key=lambda i: (scored[i][0].inputs, i))


def select(rows: pd.DataFrame, masks: dict[str, tuple[pd.Series, pd.Series | None]], candidates=CANDIDATES,
           normal: tuple[str, ...] = ()) -> tuple[TwoStepDecision, pd.DataFrame]:
    """(the chosen two-step decision, the table of every candidate and reference) from a table shaped like
    core.audits.external's rows with every p_<branch> and the signs; `masks`: comparison -> (positives,
    negatives or None for an all-COVID set), boolean over `rows`, of the comparisons that choose only; `normal`:
    those of them against normal lungs (the lesion-share condition of the rule)."""
    part, y, src = selection_rows(rows)
    masks = {k: (np.asarray(pos, bool), None if neg is None else np.asarray(neg, bool))
             for k, (pos, neg) in masks.items()}

    def reference(name: str, lesion: dict) -> Scored:
        p = (rows["lesion_share"] if name == LESION_SHARE else rows[f"p_{name}"]).astype(float).fillna(0.0)
        cut = operating_point(p.loc[part.index].to_numpy(), y, src)
        return _measure(f"{name} alone", "reference", p.to_numpy(), cut, masks, lesion)

    lesion = {c: auc for c, auc in reference(LESION_SHARE, {}).aucs.items() if c in normal}
    fitted = []
    for c in candidates:
        if f"p_{c.pattern_branch}" not in rows or rows[f"p_{c.pattern_branch}"].isna().any():
            continue
        decision = fit_candidate(rows, c.pattern_branch, c.signs)
        fitted.append((c, decision, _measure(c.name, "candidate", decision.on_table(rows)[f"p_{decision.name}"]
                                            .to_numpy(float), decision.operating_point, masks, lesion)))
    if not fitted:
        raise ValueError(f"no candidate of the two-step decision has its branch's probabilities in the rows "
                         f"(columns p_{', p_'.join(sorted({c.pattern_branch for c in candidates}))})")
    chosen = _best([(c, s) for c, _, s in fitted])
    fitted[chosen][2].chosen = True
    references = [reference(name, lesion) for name in (*dict.fromkeys(c.pattern_branch for c, _, _ in fitted),
                                                       LESION_SHARE)]
    table = pd.DataFrame([s.row() for _, _, s in fitted] + [s.row() for s in references])
    return fitted[chosen][1], table


def rule_of(saved: dict) -> str:
    """The rule a stored selection table was chosen by (external.json's or decision.json's `selection_rule`), in
    words; a table stored before the rule was saved beside it says so."""
    return saved.get("selection_rule") or ("the rule of the version that fitted it, not recorded with the table "
                                           "(before the lesion-share condition)")


def _num(v, digits: int) -> str:
    """A stored number as text; blank where it could not be measured (NaN, or None in strict JSON)."""
    return "" if v is None or v != v else f"{float(v):.{digits}f}"


def table_text(records: list[dict]) -> pd.DataFrame:
    """The stored selection table (`select`'s, as records, also read back from strict JSON) as text columns a page
    or a report prints."""
    out = []
    for r in records:
        # a record stored before the lesion-share condition has no `fails`: its one condition was the sensitivity
        fails = r.get("fails", () if r["eligible"] else (MISSES_COVID,))
        row = {"decision": r["name"], "": "chosen" if r["chosen"] else ("reference" if r["kind"] == "reference" else
                                                                           ", ".join(fails)),
               "score (mean AUC)": _num(r["score"], 3)}
        row.update({f"AUC {k}": _num(v, 3) for k, v in r["aucs"].items()})
        row["under lesion share"] = _num(r.get("under_lesion_share"), 3)
        row.update({f"sensitivity {k}": _num(v, 2) for k, v in r["sensitivities"].items()})
        row["operating point"] = _num(r["operating_point"], 3)
        out.append(row)
    return pd.DataFrame(out)
