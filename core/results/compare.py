"""Two runs side by side: which slices both scored, where their decisions differ, and how their metrics
differ. Inputs are RunView.predictions frames and RunView.metrics dicts, so every page and command
compares the same way."""
from __future__ import annotations

import pandas as pd

from core.results.metrics import METRICS


def decisions(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """One row per slice in either run: key, in_a, in_b, p_a, p_b, pred_a, pred_b (each run's decision
    branch at its own operating point) and `changed`: both runs scored it and decided differently."""
    cols = ["key", "p", "pred"]
    out = a[cols].merge(b[cols], on="key", how="outer", suffixes=("_a", "_b"), indicator=True)
    out["in_a"] = out.pop("_merge").isin(["both", "left_only"])
    out["in_b"] = out["p_b"].notna()
    out["changed"] = out.in_a & out.in_b & (out.pred_a != out.pred_b)
    return out


def changed_column(a: pd.DataFrame, b: pd.DataFrame) -> pd.Series:
    """For the slices of run a, in its order: True / False (decision changed in b), or None when b lacks it."""
    return changed_from(a, decisions(a, b))


def changed_from(a: pd.DataFrame, both: pd.DataFrame) -> pd.Series:
    """changed_column from `decisions(a, b)` already computed (the dashboard caches it)."""
    d = both.set_index("key")
    return pd.Series([bool(d.at[k, "changed"]) if d.at[k, "in_b"] else None for k in a.key], index=a.index,
                     dtype=object)


def difference_table(ma: dict, mb: dict) -> pd.DataFrame:
    """RunView.metrics of two runs on one split -> per branch both have: b - a of each metric's value."""
    rows = []
    for branch in [x for x in ma if x in mb]:
        rows.append({"branch": branch, **{k: mb[branch][k]["value"] - ma[branch][k]["value"] for k in METRICS}})
    return pd.DataFrame(rows, columns=["branch", *METRICS])
