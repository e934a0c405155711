"""The Margin review's filters (plain pandas, so tests can compute the expected counts)."""
from __future__ import annotations

import pandas as pd

from core.trust.slices import TWO_CLASS

FILTERS = {
    "all slices": lambda df: df,
    "misclassified only": lambda df: df[~df.correct],
    "false negatives": lambda df: df[df.outcome == "false negative"],
    "false positives": lambda df: df[df.outcome == "false positive"],
}


def filter_cases(df: pd.DataFrame, show: str = "all slices", splits=None, disagree: bool = False,
                 descending: bool = False, changed: bool = False, two_class: bool = False) -> pd.DataFrame:
    """RunView.predictions rows kept by the filters, sorted by margin (ascending: nearest the boundary first).
    changed: only slices whose decision differs in the comparison run (needs column `changed`); two_class: only
    slices whose prediction set holds both classes (needs column `set`, core.trust.slices.with_sets)."""
    out = FILTERS[show](df)
    if two_class:
        out = out[out["set"] == TWO_CLASS]
    if splits is not None:
        out = out[out.split.isin(list(splits))]
    if disagree:
        out = out[out.disagreement]
    if changed:
        out = out[out.changed == True]  # noqa: E712 (None: not in the other run)
    return out.sort_values(["margin", "key"], ascending=[not descending, True], kind="stable")
