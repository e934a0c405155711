"""The 3D map component's arguments (dashboard.components.scatter3d) from a predictions frame: one point
per slice with its hover text and card, and the colouring the page picked (groups, or a continuous scale).

Kept in the dashboard: it is the component's argument format and the map's palette, no measurement.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

COLOUR_BY = ("label", "prediction", "correct / incorrect", "margin |p - t|", "split")
CHANGED = "decision changed (comparison run)"  # offered when a second run is picked; needs df["changed"]
CHANGED_NAMES = {True: "decision changed", False: "same decision", None: "not in the other run"}
PALETTE = {"non-COVID": "#4C9BE8", "COVID": "#E8604C", "correct": "#3BB273", "incorrect": "#E15554",
           "train": "#9AA0A6", "val": "#F2B134", "test": "#8E6CEF", "decision changed": "#E8604C",
           "same decision": "#9AA0A6", "not in the other run": "#DDDDDD"}
CLASS_NAMES = {0: "non-COVID", 1: "COVID"}


def map_points(df: pd.DataFrame, keys: list[str], xyz: np.ndarray, colour_by: str, thumbs: dict) -> dict:
    """{"points", "groups", "continuous"} for scatter3d: the slices `keys` (rows of `xyz`), coloured by
    `colour_by` (one of COLOUR_BY, or CHANGED), hover cards from `thumbs` (key -> data URIs)."""
    d = df.set_index("key").loc[keys]
    name = CLASS_NAMES
    points = [{"key": k, "x": float(p[0]), "y": float(p[1]), "z": float(p[2]),
               "text": f"{name[int(r.label)]} · pred {name[int(r.pred)]} · p={r.p:.3f} · {r.split}",
               "outcome": r.outcome, "imgs": thumbs.get(k, [])}
              for k, p, r in zip(keys, xyz, d.itertuples())]
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
        else:
            cat = d.split
        for c in pd.unique(cat):
            groups.append({"name": str(c), "color": PALETTE.get(str(c), "#cccccc"),
                           "indices": [int(i) for i in np.nonzero((cat == c).to_numpy())[0]]})
    return {"points": points, "groups": groups, "continuous": continuous}
