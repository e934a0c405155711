"""The 3D map component's arguments (dashboard.components.scatter3d) from a predictions frame: one point
per slice with its hover text and card, and the colouring the page picked (groups, or a continuous scale).

Kept in the dashboard: it is the component's argument format and the map's palette, no measurement.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.trust.slices import IN_LABEL, OOD_LABEL, SET_LABELS, TWO_CLASS

COLOUR_BY = ("label", "prediction", "correct / incorrect", "margin |p - t|", "split")
CHANGED = "decision changed (comparison run)"  # offered when a second run is picked; needs df["changed"]
PREDICTION_SET = "prediction set"  # offered when the run gives sets; needs df["set"] (core.trust.slices.SET_LABELS)
OOD = OOD_LABEL  # offered when the run gives the flag; needs df["ood"]
CHANGED_NAMES = {True: "decision changed", False: "same decision", None: "not in the other run"}
PALETTE = {"non-COVID": "#4C9BE8", "COVID": "#E8604C", "correct": "#3BB273", "incorrect": "#E15554",
           "train": "#9AA0A6", "val": "#F2B134", "test": "#8E6CEF", "decision changed": "#E8604C",
           "same decision": "#9AA0A6", "not in the other run": "#DDDDDD",
           SET_LABELS[("non-COVID",)]: "#4C9BE8", SET_LABELS[("COVID",)]: "#E8604C", TWO_CLASS: "#F2B134",
           SET_LABELS[()]: "#333333", OOD_LABEL: "#D62BD6", IN_LABEL: "#9AA0A6"}
CLASS_NAMES = {0: "non-COVID", 1: "COVID"}


def _flagged(v) -> bool:
    """An `ood` cell: True, False, or missing (a slice the flag has no vector for: not flagged)."""
    return bool(v) if pd.notna(v) else False


def _trust_text(r: pd.Series) -> str:
    """A point's prediction set and flag for its hover text, when the frame has them."""
    return (f" · set {r['set']}" if "set" in r else "") + (f" · {OOD_LABEL}" if _flagged(r.get("ood")) else "")


def map_points(df: pd.DataFrame, keys: list[str], xyz: np.ndarray, colour_by: str, thumbs: dict) -> dict:
    """{"points", "groups", "continuous"} for scatter3d: the slices `keys` (rows of `xyz`), coloured by
    `colour_by` (one of COLOUR_BY, CHANGED, PREDICTION_SET or OOD), hover cards from `thumbs` (key -> data URIs)."""
    d = df.set_index("key").loc[keys]
    name = CLASS_NAMES
    extra = [_trust_text(r) for _, r in d.iterrows()]
    points = [{"key": k, "x": float(p[0]), "y": float(p[1]), "z": float(p[2]),
               "text": f"{name[int(r.label)]} · pred {name[int(r.pred)]} · p={r.p:.3f} · {r.split}{e}",
               "outcome": r.outcome, "imgs": thumbs.get(k, [])}
              for k, p, r, e in zip(keys, xyz, d.itertuples(), extra)]
    groups, continuous = [], None
    if colour_by == "margin |p - t|":
        continuous = {"values": d.margin.round(4).tolist(), "title": "|p - t|"}
    else:
        if colour_by == "label":
            cat = d.label.map(name)
        elif colour_by == "prediction":
            cat = d.pred.map(name)
        elif colour_by == "correct / incorrect":
            cat = d.correct.map({True: "correct", False: "incorrect"})
        elif colour_by == CHANGED:
            cat = d.changed.map(lambda v: CHANGED_NAMES[None if v is None else bool(v)])
        elif colour_by == PREDICTION_SET:
            cat = d["set"]
        elif colour_by == OOD:
            cat = d.ood.map(lambda v: OOD_LABEL if _flagged(v) else IN_LABEL)
        else:
            cat = d.split
        for c in pd.unique(cat):
            groups.append({"name": str(c), "color": PALETTE.get(str(c), "#cccccc"),
                           "indices": [int(i) for i in np.nonzero((cat == c).to_numpy())[0]]})
    return {"points": points, "groups": groups, "continuous": continuous}
