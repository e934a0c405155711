"""What a trained run says of new slices and scans beyond their probabilities (`train predict`'s "decision" and scan
lines), each part with why it is missing when the run cannot give it:

    slice   the decision branch's call at its operating point, its prediction set at `level` (core.trust.conformal,
            calibrated on the run's validation split), the out-of-distribution flag (core.trust.ood, at the level
            `train trust` measured it with) and whether its lungs can be read at all (core.knowledge.lung_window)
    scan    the call by core.knowledge.scan.RULE, the opacity per lung and the lesion by zone, and how far the call
            can be trusted (core.trust.scan_call)

The dashboard shows the same parts on its Case view, New slice and Scan pages (dashboard.trust_ui).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from core.knowledge import lung_window
from core.runs.feature_cache import CacheError
from core.trust import store
from core.trust.conformal import LEVEL
from core.trust.ood import FLAG_COLUMN, WHY_COLUMN
from core.trust.scan_call import assess, flag_columns

# what a run that cannot give a part raises: no predictions or features yet, a moved data location, a bad cache
TRUST_ERRORS = (OSError, ValueError, KeyError, CacheError)


def _attempt(make: Callable):
    """(make(), "") or (None, why not) when the run cannot give it."""
    try:
        return make(), ""
    except TRUST_ERRORS as exc:
        return None, str(exc)


class RunCalls:
    """The decision's calls of one trained run (its folder `run_path`), fitted once for every slice it is asked of."""

    def __init__(self, run_path: str | Path, level: float = LEVEL):
        from core.audits.external import EXTERNAL_FILE
        from core.audits.windows import WINDOWS_FILE
        from core.runs.run_view import RunView
        from core.trust import conformal, ood
        from core.trust.slices import flag_alpha

        path = Path(run_path).resolve()
        view = RunView(path.parent, path.name)
        self.branch = view.decision_branch()
        self.threshold = float(view.thresholds[self.branch])
        self.level = level
        self.sets, self.no_sets = _attempt(lambda: conformal.fit_run(view.run, self.branch, level))
        self.flag, self.no_flag = _attempt(lambda: ood.fit_run(view.run, flag_alpha(store.load(view.run))))
        self.external = view.run_json(EXTERNAL_FILE)
        self.windows = view.run_json(WINDOWS_FILE)

    @property
    def flag_columns(self):
        """core.knowledge.scan.score_volume's `extra` that assesses every slice with the flag (None without one)."""
        return None if self.flag is None else flag_columns(self.flag)

    def of_slice(self, probs: dict, flagged: dict | None, lungs_black=None) -> dict:
        """A slice's call (`probs`: its analysis' probabilities; `flagged`: its flag columns, core.trust.ood.COLUMNS,
        or None when the run has no flag; `lungs_black`: its analysis' LungsBlack)."""
        p = float(probs[self.branch])
        out = {"branch": self.branch, "p": round(p, 6), "operating_point": round(self.threshold, 6),
               "call": "COVID" if p >= self.threshold else "non-COVID"}
        if self.sets is None:
            out.update(prediction_set=None, no_prediction_set=self.no_sets)
        else:
            out.update(prediction_set=list(self.sets.set_of(p)), set_level=self.level)
        if flagged is None:
            out.update(unlike_training=None, no_flag=self.no_flag or "the slice was not assessed")
        else:
            out.update(unlike_training=bool(flagged[FLAG_COLUMN]), unlike_why=str(flagged[WHY_COLUMN] or ""))
        out["lungs_readable"] = lung_window.readable(lungs_black)
        if not out["lungs_readable"]:
            out["lungs_why"] = lung_window.WORDS
        return out

    def of_scan(self, table: pd.DataFrame) -> dict:
        """A scan's call from its table (core.knowledge.scan.score_volume, with the flag columns when the run has a
        flag), with the opacity per lung, the lesion by zone and how far the call can be trusted."""
        from core.knowledge.scan import summarise

        s = summarise(table, self.branch, self.threshold)
        dec = s.decision
        trust = assess(table, dec, self.external, self.no_flag, self.windows)
        number = lambda v: None if v is None or math.isnan(v) else round(float(v), 6)
        return {"scan_decision": dec.label, "branch": dec.branch, "statistic": number(dec.statistic),
                "operating_point": round(dec.threshold, 6), "rule": dec.words, "slices": s.slices,
                "with_lung_field": s.with_lung, "unreadable": s.problems, "driving_slices": dec.top,
                "opacity": {k: number(v) for k, v in s.opacity.items()},
                "lesion_by_zone": {k: number(v) for k, v in s.zones.items()},
                "trust": {"steady": trust.steady, "unlike_training_driving": trust.flagged_top,
                          "unlike_training": trust.flagged, "lines": trust.lines()}}
