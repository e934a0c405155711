"""The lung-window audit (RUN/windows.json, core.audits.windows) as a table and a sentence a page or a report
prints: per window, the decision's and the lesion share's AUC [95% CI] on COVID-CT-MD's reported patients, the
infected slices against the normal patient's and against the pneumonia patient's, and the decision's scan calls.
`train report` and the "Does it look at the disease?" page both print these, so they say the same."""
from __future__ import annotations

import pandas as pd

from core.audits.windows import BASELINE, other_windows, scan_calls_right, spread
from core.results.external_tables import auc_text

AGAINST = ("normal", "pneumonia")


def window_table(result: dict, decision: str) -> pd.DataFrame:
    """One row per window (the product's first, marked): `decision`'s and the lesion share's AUC against each."""
    branches = list(dict.fromkeys((decision, BASELINE)))
    calls = {w: f"{right} of {n}" for w, right, n in scan_calls_right(result, decision)}
    rows = []
    for w in result.get("windows", []):
        row = {"lung window": w["window"] + (" (the product's)" if w["product"] else "")}
        for against in AGAINST:
            for b in branches:
                m = w["comparisons"].get(against, {}).get("branches", {}).get(b)
                row[f"{b}, infected vs {against}"] = "" if m is None else auc_text(m["auc"], *m["auc_ci"])
        row[f"{decision}, scan calls right"] = calls.get(w["window"], "")
        rows.append(row)
    return pd.DataFrame(rows)


def window_sentence(result: dict, decision: str) -> str:
    """'Shown in 4 other lung windows, **two-step** scores AUC 0.937 to 0.958 against the normal patient's slices
    (0.970 in the product's window) and 0.908 to 0.929 against the pneumonia patient's (0.952).'; '' if unmeasured."""
    parts = []
    for against in AGAINST:
        s = spread(result, decision, against)
        if s is not None:
            parts.append((against, s))
    if not parts:
        return ""
    said = [f"{lo:.3f} to {hi:.3f} against the {against} patient's slices ({product:.3f} in the product's window)"
            if i == 0 else f"{lo:.3f} to {hi:.3f} against the {against} patient's ({product:.3f})"
            for i, (against, (product, lo, hi)) in enumerate(parts)]
    text = f"Shown in {other_windows(result)} other lung windows, **{decision}** scores AUC " + " and ".join(said) + "."
    calls = scan_calls_right(result, decision)
    if calls and all(right == n for _, right, n in calls):
        text += f" Its scan calls are right in every window ({calls[0][1]} of {calls[0][2]} patients)."
    elif calls:
        text += " Its scan calls are not all right in " + ", ".join(
            f"{w} ({right} of {n})" for w, right, n in calls if right < n) + "."
    return text
