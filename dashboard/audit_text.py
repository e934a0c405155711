"""One plain sentence per shortcut-audit figure (core.audits.shortcut.figure_frames), for clinicians.

The thresholds below only choose the wording; the figures beside the sentences show the numbers."""
from __future__ import annotations

import pandas as pd

from core.audits.shortcut import BASELINE_MAPS, LUNGS_READABLE
from core.results.external_tables import chosen_on

CHANCE = 0.5
FRAME_READ = 0.60  # lungs-blanked AUC above this (whole interval): the frame alone separates the classes


def _ci(row) -> str:
    return f"{row['low']:.2f}–{row['high']:.2f}"


def blanked(auc: pd.DataFrame, branch: str) -> str:
    rows = auc[auc.branch == branch].set_index("condition")
    if "lungs-blanked" not in rows.index:
        return f"No lungs-blanked score for {branch}."
    b = rows.loc["lungs-blanked"]
    head = f"With the lungs blanked, **{branch}** scores AUC {b.auc:.2f} (95% CI {_ci(b)})"
    if b.low > FRAME_READ:
        return (head + ": the frame around the lungs alone (zoom, crop, borders, body outline) tells it COVID "
                "from non-COVID, so part of its decision comes from where the slice came from, not the disease.")
    if b.high < FRAME_READ or b.auc <= CHANCE + 0.05:
        return head + ": close to chance (0.5). What lies outside the lungs does not tell it the classes apart."
    return (head + ": between chance and a clear shortcut. Some of its decision may come from outside the "
            "lungs; compare it with the lungs-only bar.")


def window(auc: pd.DataFrame, branch: str) -> str:
    """The AUC without the slices shown in a soft-tissue window beside the whole test split's ("" when the audit
    left none out)."""
    rows = auc[auc.branch == branch].set_index("condition")
    if LUNGS_READABLE not in rows.index or "intact" not in rows.index:
        return ""
    r, whole = rows.loc[LUNGS_READABLE], rows.loc["intact"]
    text = (f"Without the {int(r.left_out)} test slices shown in a soft-tissue window (their lungs black; in COVID-CT "
            f"nearly all non-COVID), **{branch}** scores AUC {r.auc:.2f} (95% CI {_ci(r)}) against {whole.auc:.2f} "
            "on every slice")
    if whole.auc - r.auc >= 0.005:
        return text + f": the display window, not the lungs, gave it {whole.auc - r.auc:.2f} of its test AUC."
    return text + ": the window gave it nothing."


def external(ext: pd.DataFrame, branch: str) -> str:
    rows = ext[ext.branch == branch]
    if rows.empty:
        return f"No external slices scored for {branch}."
    r = rows.iloc[0]
    found = round(r.sensitivity * r.n)
    text = (f"Of {r.n} COVID slices from another source (COVID-SemiSeg, every one with lesions), **{branch}** calls "
            f"{found} COVID (sensitivity {r.sensitivity:.2f}, 95% CI {_ci(r)}) at its operating point, chosen on "
            f"{chosen_on(branch)}, where it calls {r.specificity:.0%} of COVID-CT's non-COVID test slices "
            "non-COVID.")
    if r.high < 0.5:
        text += " It misses most COVID slices that do not look like its training source."
    return text


def pointing(point: pd.DataFrame, branch: str) -> str:
    rows = point.set_index("map")
    if branch not in rows.index:
        return f"{branch} has no map scored against the lesion masks."
    r = rows.loc[branch]
    text = (f"The peak of **{branch}**'s map lands on an expert-drawn lesion in {r.pointing:.0%} of the external "
            f"slices (95% CI {_ci(r)}).")
    uniform, in_lungs = BASELINE_MAPS
    flat = rows.loc[uniform] if uniform in rows.index else None
    if flat is None:
        return text
    text += f" A flat map that knows nothing of the slice scores {flat.pointing:.0%}"
    if in_lungs in rows.index:
        text += f", a flat map over the lung field {rows.loc[in_lungs].pointing:.0%}"
    if r.low > flat.pointing:
        return text + ": the map points at the lesions more often than chance."
    return text + ": the map points at the lesions no better than chance."
