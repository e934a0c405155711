"""How far a scan's call can be trusted: what the Scan page and its report say under the decision.

Three readings of what the run already holds; nothing is fitted here:

  the rule's constant   the call at the rule's top share and at the candidate shares on either side of it (of
                        core.knowledge.scan.CANDIDATE_SHARES: 10%, 25%, 50%): the constant was chosen on three
                        patients, and a call that turns when somewhat fewer or more slices count rests on it. The
                        mean over every slice is left out: it asks how widespread the disease is, and a focal
                        COVID-19 pneumonia turns there (P001 and P002 in every run of docs/results.md)
  unlike the training   the slices the out-of-distribution flag (core.trust.ood) marks, among those that drive the
                        call and among all with a lung field (the scan table's FLAG_COLUMN, when it was scored
                        with the flag)
  another hospital      the run's scan calls on COVID-CT-MD's report patients and its slice AUCs there, with
                        95% intervals (external.json, `train external`): patients that chose nothing; and the
                        lowest of those AUCs with their slices shown in other lung windows (windows.json,
                        `train windows`): a hospital exports through its own viewer's preset

The flag passes most of COVID-CT-MD's lung slices, a hospital no run trained on, so "like the training slices" does not
say the decision carries over: the third reading is the one measured on another hospital.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.audits.external import REPORTS, against_normal
from core.audits.windows import other_windows, spread
from core.knowledge.scan import CANDIDATE_SHARES, RULE, ScanDecision, ScanRule
from core.results.external_tables import auc_text
from core.trust.image_check import measure
from core.trust.ood import FLAG_COLUMN


@dataclass(frozen=True)
class ShareCall:
    share: float  # the top share of the slices with a lung field whose mean is the statistic
    statistic: float
    covid: bool | None  # None: no slice with a lung field


@dataclass(frozen=True)
class HeldOut:
    patient: str
    diagnosis: str
    statistic: float
    right: bool


@dataclass(frozen=True)
class SliceAuc:
    comparison: str  # external.json's name, e.g. "covid-ct-md P002 infected vs normal002"
    against: str  # "normal" or "pneumonia"
    auc: float
    low: float
    high: float


@dataclass(frozen=True)
class WindowLow:
    against: str  # "normal" or "pneumonia"
    product: float  # the slice AUC in the product's lung window
    low: float  # the lowest in the other windows
    windows: int  # how many other windows


@dataclass(frozen=True)
class CallTrust:
    decision: ScanDecision
    shares: tuple[ShareCall, ...]
    flagged_top: int | None  # None: the scan was scored without the flag
    flagged: int | None
    with_lung: int
    held_out: tuple[HeldOut, ...]  # empty: the run has no external.json
    slice_aucs: tuple[SliceAuc, ...]
    record_rule: str | None  # the scan rule external.json's calls were made by
    no_flag: str = ""  # why the scan was scored without the flag, when it was
    window_lows: tuple[WindowLow, ...] = ()  # empty: the run has no windows.json

    @property
    def steady(self) -> bool | None:
        """Whether every top share of `shares` gives the decision's call (None: no decision)."""
        if self.decision.covid is None:
            return None
        return all(s.covid == self.decision.covid for s in self.shares)

    def lines(self) -> list[str]:
        """The three readings in plain words (Markdown), one line each."""
        return [self._rule_line(), self._flag_line(), self._record_line()]

    def brief(self) -> str:
        """The three readings in one line (the scan report's)."""
        ends = f"{self.shares[0].share:.0%} to {self.shares[-1].share:.0%}"
        parts = [{True: f"same call at top shares {ends}", False: f"the call turns within top shares {ends}",
                  None: "no call"}[self.steady]]
        if self.flagged_top is not None:
            parts.append(f"{self.flagged_top} of {len(self.decision.top)} driving slices unlike the training ones")
        if self.held_out:
            aucs = ", ".join(f"{a.auc:.2f} vs {a.against}" for a in self.slice_aucs)
            parts.append(f"another hospital: {sum(h.right for h in self.held_out)} of {len(self.held_out)} scan calls "
                         "right" + (f", slice AUC {aucs}" if aucs else ""))
        else:
            parts.append("not measured on another hospital")
        return "Trust: " + " · ".join(parts)

    def _rule_line(self) -> str:
        dec = self.decision
        if dec.covid is None:
            return "No call to weigh: no slice of the scan was scored with a lung field in it."
        gap = dec.statistic - dec.threshold
        where = (f"The statistic {dec.statistic:.3f} lies {abs(gap):.3f} {'above' if gap >= 0 else 'below'} the "
                 f"operating point {dec.threshold:.3f}")
        ends = f"{self.shares[0].share:.0%} to {self.shares[-1].share:.0%}"
        if self.steady:
            return f"{where}, and the call is the same whether the top {ends} of the slices count."
        flips = ", ".join(f"{s.share:.0%} ({s.statistic:.3f})" for s in self.shares if s.covid != dec.covid)
        return (f"{where}, but the call changes with how many slices count: it turns at top share {flips}. It rests "
                "on the few slices that drive it: read them.")

    def _flag_line(self) -> str:
        if self.flagged is None:
            return "No out-of-distribution flag for this scan" + (f": {self.no_flag}" if self.no_flag else ".")
        top = len(self.decision.top)
        text = (f"Unlike the training slices (the out-of-distribution flag): {self.flagged_top} of the {top} "
                f"slice{'s' * (top != 1)} that drive{'s' * (top == 1)} the call, {self.flagged} of the "
                f"{self.with_lung} with a lung field.")
        if self.flagged_top:
            return text + " The network extrapolates on those: read their maps with care."
        return text + (" Passing the flag does not show that the call carries over to another hospital (it passes "
                       "most of COVID-CT-MD's lung slices too): the next line is measured on one.")

    def _record_line(self) -> str:
        if not self.held_out:
            return ("Not measured on another hospital yet: `python -m train external --run RUN --data-root DATA` "
                    "scores COVID-CT-MD's patients.")
        right = sum(h.right for h in self.held_out)
        calls = ", ".join(f"{h.patient} ({h.diagnosis}) {h.statistic:.3f}" for h in self.held_out)
        aucs = "; ".join(f"slices with visible infection against {a.against} slices: AUC "
                         f"{auc_text(a.auc, a.low, a.high)}" for a in self.slice_aucs)
        rule = "" if self.record_rule in (None, RULE.name) else f" (calls made by rule '{self.record_rule}')"
        return (f"On another hospital's patients that chose nothing (COVID-CT-MD): {right} of {len(self.held_out)} "
                f"scan calls right{rule}: {calls}" + (f"; {aucs}" if aucs else "") + "." + self._windows_text())

    def _windows_text(self) -> str:
        if not self.window_lows:
            return ""
        lows = " and ".join(f"{w.low:.3f} against {w.against} slices ({w.product:.3f} in the product's window)"
                            for w in self.window_lows)
        return (f" Shown in {self.window_lows[0].windows} other lung windows, as another hospital may export them, "
                f"those slice AUCs stay at or above {lows}.")


def neighbours(shares: tuple[float, ...] = CANDIDATE_SHARES, share: float = RULE.top_share) -> tuple[float, ...]:
    """`share` and the candidate shares next to it, in order."""
    i = shares.index(share)
    return shares[max(0, i - 1):i + 2]


def share_calls(table: pd.DataFrame, decision: ScanDecision,
                shares: tuple[float, ...] = neighbours()) -> tuple[ShareCall, ...]:
    """The call of the decision's branch at its operating point under each top share."""
    out = []
    for share in shares:
        stat = ScanRule(f"top {share:.0%} mean", share).statistic(table, decision.branch)
        out.append(ShareCall(share, stat, None if math.isnan(stat) else bool(stat >= decision.threshold)))
    return tuple(out)


def record(external: dict | None, branch: str) -> tuple[tuple[HeldOut, ...], tuple[SliceAuc, ...]]:
    """The report patients' scan calls and the report comparisons' AUCs of `branch` in external.json; empty
    when the run has none or `branch` was not scored there."""
    if not external:
        return (), ()
    held = tuple(HeldOut(p, v["diagnosis"], float(v["scan_statistic"][branch]),
                         v["scan_covid"][branch] == bool(v["label"]))
                 for p, v in (external.get("patients") or {}).items()  # a statistic of None: no slice to decide on
                 if v.get("role") == REPORTS and (v.get("scan_statistic") or {}).get(branch) is not None)
    normal = set(against_normal(REPORTS))
    aucs = []
    for name, c in (external.get("comparisons") or {}).items():
        m = (c.get("branches") or {}).get(branch)
        if c.get("role") != REPORTS or not name.startswith("covid-ct-md") or not m or m.get("auc") is None:
            continue
        low, high = m.get("auc_ci") or (math.nan, math.nan)
        against = "normal" if name in normal else "pneumonia"
        aucs.append(SliceAuc(name, against, float(m["auc"]), float(low), float(high)))
    return held, tuple(aucs)


def flag_columns(flag):
    """core.knowledge.scan.score_volume's `extra`: each slice's out-of-distribution assessment by `flag` (the run's
    core.trust.ood.OodFlag; core.trust.ood.COLUMNS), from its fusion-layer input and its image statistics."""
    def assess_slice(tr, a, slice01: np.ndarray) -> dict:
        return flag.assess(tr.fusion_vector(a)[None], [measure(slice01)]).iloc[0].to_dict()

    return assess_slice


def window_lows(windows: dict | None, branch: str) -> tuple[WindowLow, ...]:
    """`branch`'s slice AUCs on the report patients in the product's lung window and the lowest in the others
    (windows.json); empty when the run has none or `branch` was not scored there."""
    found = ((against, spread(windows, branch, against)) for against in ("normal", "pneumonia"))
    return tuple(WindowLow(against, s[0], s[1], other_windows(windows)) for against, s in found if s is not None)


def assess(table: pd.DataFrame, decision: ScanDecision, external: dict | None, no_flag: str = "",
           windows: dict | None = None) -> CallTrust:
    """The three readings of a scan's call (`table`: core.knowledge.scan.score_volume's, with FLAG_COLUMN when
    scored with the flag; `external`, `windows`: the run's external.json and windows.json, or None; `no_flag`: why
    the table has no flag)."""
    lungs = table[table.lung_found]
    flagged = flagged_top = None
    if FLAG_COLUMN in table:
        flags = lungs[FLAG_COLUMN].fillna(False).astype(bool)
        flagged = int(flags.sum())
        flagged_top = int(flags[lungs["index"].isin(decision.top)].sum())
    held, aucs = record(external, decision.branch)
    return CallTrust(decision, share_calls(table, decision), flagged_top, flagged, len(lungs), held, aucs,
                     (external or {}).get("rule"), no_flag, window_lows(windows, decision.branch) if held else ())
