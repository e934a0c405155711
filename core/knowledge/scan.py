"""A whole CT scan scored slice by slice with a trained run, and what a clinician reads per scan.

    table = score_volume(tr, volume, progress=lambda done, total: ...)   # one row per slice, body order
    scan = summarise(table, branch="fusion", threshold=0.42)               # ScanSummary
    scan.opacity["right"], scan.zones["lower"], scan.decision.covid, scan.decision.words

`tr` is a TrainedRun, or a run's segmenter alone (core.inference.LesionReader, while its classifiers train): its
table has the lesion share, the signs and the areas but no classifier's p(COVID), and `summarise(table, None)`
the opacity and zones but no decision.

Clinicians read scans, not slices: tools shown to them report the percent of opacity per lung, where
along the scan the disease lies, and a decision per scan. Per slice the run does what
`TrainedRun.analyse` does and nothing more (no map is drawn for every slice: a page draws the maps of
the one slice it shows), then the slice's signs (core.knowledge.signs) are read off that analysis.

Per-slice table (`score_volume`): `index`, `position_mm`, `file`, `p_<branch>` of every branch, `lung_found`,
the signs (`SIGNS`), the areas of each lung's field and of its lesion (`AREAS`, in the slice's pixels and,
with the series' pixel spacing, in mm^2), the lung zone, and `problem` (a slice that could not be read or
analysed keeps its row, with this text and no numbers).

Areas: the signs are measured on the lesion map's grid, which covers the analysis' frame (a box on the
original slice, `SliceAnalysis.frame`); a grid pixel is (frame height / grid) x (frame width / grid)
pixels of the original slice, and a pixel is row spacing x column spacing mm^2.

Scan level (`summarise`), over the slices where a lung field was found (a slice without one would count
the whole frame as lung):
  opacity per lung   sum of lesion area / sum of lung area of that lung over the scan
  zones              share of the scan's lesion area in the upper, middle and lower third of the scan's
                     lung extent (the slices whose lung field is at least EXTENT_MIN of the largest);
                     positions run foot to head (core.data.series: Image Position along the slice
                     normal, Slice Location, the NIfTI affine); without positions there are no zones
  decision           RULE (below), its statistic against the decision branch's operating point
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.data.imaging import ImageReadError, _problem
from core.data.series import Volume
from core.inputs.lesion_maps import LESION_MAP_SIZE
from core.knowledge.decision import FACTOR_COLUMNS
from core.knowledge.signs import SIGNS, on_grid

SIDES = ("right", "left")  # patient's right lung = image left, as core.knowledge.signs splits them
AREAS = tuple(f"{side}_{what}_{unit}" for side in SIDES for what in ("lung", "lesion") for unit in ("px", "mm2"))
ZONES = ("upper", "middle", "lower")
EXTENT_MIN = 0.1  # a slice is in the lung extent when its lung field is at least this share of the largest
POSITIONAL = ("image position", "slice location", "NIfTI affine")  # orderings whose positions run foot to head

Progress = Callable[[int, int], None]  # (slices done, slices in all)
SliceExtra = Callable[[object, object, np.ndarray], dict]  # (the run, its analysis of a slice, the slice) -> columns
SliceHook = Callable[[int, object, dict], None]  # (index, the slice's analysis or None when it failed, its row)


# ------------------------------------------------------------------------------------------- the rule

@dataclass(frozen=True)
class ScanRule:
    """COVID-19 when the mean p(COVID) of the decision branch over the top `top_share` of the slices
    with a lung field (at least one slice) reaches the branch's operating point. A few diseased slices
    decide, as a reader's eye would; one stray slice does not, unless the scan has under 1/top_share."""

    name: str
    top_share: float

    def top(self, table: pd.DataFrame, branch: str) -> pd.DataFrame:
        """The slices that drive the decision: the highest p of `branch` among those with a lung field."""
        if f"p_{branch}" not in table:  # no slice of the scan could be scored
            return table.iloc[:0]
        scored = table[table.lung_found & table[f"p_{branch}"].notna()]
        k = max(1, math.ceil(self.top_share * len(scored))) if len(scored) else 0
        return scored.sort_values([f"p_{branch}", "index"], ascending=[False, True]).head(k)

    def statistic(self, table: pd.DataFrame, branch: str) -> float:
        """The rule's statistic for a scan table: NaN when no slice has a lung field."""
        top = self.top(table, branch)
        return float(top[f"p_{branch}"].mean()) if len(top) else math.nan

    def words(self, branch: str, threshold: float) -> str:
        return (f"{self.name}: COVID-19 when the mean p(COVID) of the {branch} branch over the top "
                f"{self.top_share:.0%} of the slices with a lung field (at least one) reaches its operating "
                f"point {threshold:.3f}")


# The scan-level rule. Its one constant, the top share, was chosen on COVID-CT-MD's SELECTION patients
# (`selection_table`, never its REPORT patients) with the default recipe's decision at its operating point
# (seed 0): of 5%, 10%, 25%, 50% and all slices, 25% alone decides all three right, with the widest
# smallest margin (0.12; 10%: cap001 wrong by 0.002). docs/recipes.md keeps the table.
RULE = ScanRule("top-quartile mean", 0.25)
CANDIDATE_SHARES = (0.05, 0.10, 0.25, 0.50, 1.0)  # the top shares `selection_table` puts side by side


def selection_table(tables: dict[str, pd.DataFrame], labels: dict[str, int], branch: str, threshold: float,
                    shares: tuple[float, ...] = CANDIDATE_SHARES) -> pd.DataFrame:
    """The evidence for choosing the rule's top share: each candidate's statistic on each COVID-CT-MD
    SELECTION patient's scan table (patient -> table, label 1 COVID-19, 0 not), whether it decides the
    patient right at `threshold`, and by what margin (signed: negative when wrong). REPORT patients, and
    patients that are neither, are refused: they may not choose anything."""
    from core.data.ctmd import SELECTION

    others = sorted(set(tables) - set(SELECTION))
    if others:
        raise ValueError(f"the rule is chosen on COVID-CT-MD's selection patients ({', '.join(SELECTION)}) only; "
                         f"got {', '.join(others)}")
    rows = []
    for share in shares:
        rule = RULE if share == RULE.top_share else ScanRule(f"top {share:.0%} mean", share)
        for patient, table in tables.items():
            stat = rule.statistic(table, branch)
            sign = 1 if labels[patient] == 1 else -1
            rows.append({"rule": rule.name, "top_share": share, "patient": patient, "label": labels[patient],
                         "statistic": stat, "right": not math.isnan(stat) and sign * (stat - threshold) >= 0,
                         "margin": sign * (stat - threshold)})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class ScanDecision:
    branch: str
    threshold: float
    statistic: float  # NaN: no slice to decide on
    top: list[int]  # indices of the slices that drive it
    words: str  # the rule in words

    @property
    def covid(self) -> bool | None:
        return None if math.isnan(self.statistic) else bool(self.statistic >= self.threshold)

    @property
    def label(self) -> str:
        return {True: "COVID-19", False: "not COVID-19", None: "no decision"}[self.covid]


def decide(table: pd.DataFrame, branch: str, threshold: float, rule: ScanRule = RULE) -> ScanDecision:
    return ScanDecision(branch, float(threshold), rule.statistic(table, branch),
                        [int(i) for i in rule.top(table, branch)["index"]], rule.words(branch, threshold))


# ------------------------------------------------------------------------------------------- one slice

def lung_areas(lung: np.ndarray, grid: int) -> dict[str, int]:
    """Pixels of each lung's field on the lesion map's grid, split as slice_signs splits them."""
    field = on_grid(lung, grid) > 0.5
    half = grid // 2
    return {"right": int(field[:, :half].sum()), "left": int(field[:, half:].sum())}


def slice_row(tr, slice01: np.ndarray, pixel_spacing: tuple[float, float] | None, a=None,
              extra: SliceExtra | None = None) -> dict:
    """Every branch's p(COVID), the signs and the areas of one slice (analysed by the run `tr`; `a`: its
    SliceAnalysis when already made), and `extra`'s columns."""
    a = tr.analyse(slice01) if a is None else a
    signs = a.signs
    grid = LESION_MAP_SIZE  # the signs' grid: the lesion map as a run stores it
    h, w = slice01.shape
    per_cell = (a.frame.y1 - a.frame.y0) * h / grid * (a.frame.x1 - a.frame.x0) * w / grid  # slice pixels
    mm2 = math.nan if pixel_spacing is None else float(pixel_spacing[0] * pixel_spacing[1])
    row = {f"p_{b}": float(p) for b, p in a.probs.items()}
    if a.factors is not None:
        row.update(zip(FACTOR_COLUMNS, (a.factors.disease, a.factors.pattern)))
    row.update(lung_found=bool(a.lung_found), **{k: v for k, v in signs.to_dict().items() if k in SIGNS})
    for side, cells in lung_areas(a.lung, grid).items():
        lung_px = cells * per_cell
        lesion_px = getattr(signs, f"{side}_share") * lung_px
        row.update({f"{side}_lung_px": lung_px, f"{side}_lesion_px": lesion_px,
                    f"{side}_lung_mm2": lung_px * mm2, f"{side}_lesion_mm2": lesion_px * mm2})
    if extra is not None:
        row.update(extra(tr, a, slice01))
    return row


# ------------------------------------------------------------------------------------------- the scan

def score_volume(tr, volume: Volume, progress: Progress | None = None, extra: SliceExtra | None = None,
                 on_slice: SliceHook | None = None) -> pd.DataFrame:
    """One row per slice of `volume`, in body order, scored by the trained run `tr` (TrainedRun). A slice
    that cannot be read or analysed keeps its row with `problem` set; the others carry on. `extra`: more columns
    of every slice (core.trust.scan_call.flag_columns: its out-of-distribution assessment); `on_slice`: called with
    each slice as it is scored (`train predict` prints it)."""
    rows = []
    n = len(volume)
    for i, s in enumerate(volume.slices):
        row = {"index": i, "position_mm": math.nan if s.position is None else float(s.position), "file": s.name,
               "problem": ""}
        try:
            img = s.image()
            a = tr.analyse(img)
            row.update(slice_row(tr, img, volume.pixel_spacing, a=a, extra=extra))
        except Exception as exc:  # noqa: BLE001 (a damaged slice among good ones: named in its row, the scan goes on)
            a = None
            row.update(lung_found=False, problem=str(exc) if isinstance(exc, ImageReadError) else _problem(exc))
        if on_slice is not None:
            on_slice(i, a, row)
        rows.append(row)
        if progress is not None:
            progress(i + 1, n)
    return with_zones(pd.DataFrame(rows), volume.ordering in POSITIONAL)


def with_zones(table: pd.DataFrame, positional: bool) -> pd.DataFrame:
    """`zone` of every slice (upper, middle, lower third of the scan's lung extent, a slice beyond it in
    the third it passes; '' without positions) and the sign `lower_zone` (1 in the lower third, else 0;
    NaN without positions)."""
    table = table.copy()
    for col in ("lung_found", *SIGNS, *AREAS):
        if col not in table:
            table[col] = False if col == "lung_found" else math.nan
    table["lung_found"] = table["lung_found"].fillna(False).astype(bool)
    table["zone"] = ""
    table["lower_zone"] = math.nan
    lung = table[[f"{side}_lung_px" for side in SIDES]].sum(axis=1).where(table.lung_found, 0.0).fillna(0.0)
    if not positional or table.position_mm.isna().any() or not (lung > 0).any():
        return table
    extent = table.position_mm[lung >= EXTENT_MIN * lung.max()]
    lo, hi = float(extent.min()), float(extent.max())
    third = (hi - lo) / 3
    z = table.position_mm
    table["zone"] = np.where(z <= lo + third, "lower", np.where(z < hi - third, "middle", "upper"))  # foot to head
    table["lower_zone"] = (table.zone == "lower").astype(float)
    return table


@dataclass
class ScanSummary:
    slices: int
    with_lung: int  # slices with a lung field found (the only ones the scan's numbers count)
    problems: int  # slices that could not be read or analysed
    opacity: dict[str, float]  # side -> lesion area / lung area over the scan (NaN: no lung)
    lesion_mm2: dict[str, float]  # side -> summed over the scan (NaN without the pixel spacing)
    lung_mm2: dict[str, float]
    zones: dict[str, float]  # zone -> share of the scan's lesion area (NaN without positions or lesion)
    decision: ScanDecision | None  # None: scored by a run's segmenter alone (core.inference.LesionReader)


def summarise(table: pd.DataFrame, branch: str | None, threshold: float | None = None,
              rule: ScanRule = RULE) -> ScanSummary:
    """The scan's numbers from its table (score_volume): opacity per lung, zones, and the decision of `branch` at
    `threshold` (branch None: a table of the segmenter alone, no decision)."""
    lungs = table[table.lung_found]
    opacity, lesion_mm2, lung_mm2 = {}, {}, {}
    for side in SIDES:
        lung_px = float(lungs[f"{side}_lung_px"].sum())
        opacity[side] = float(lungs[f"{side}_lesion_px"].sum()) / lung_px if lung_px > 0 else math.nan
        lesion_mm2[side] = float(lungs[f"{side}_lesion_mm2"].sum(min_count=1)) if len(lungs) else math.nan
        lung_mm2[side] = float(lungs[f"{side}_lung_mm2"].sum(min_count=1)) if len(lungs) else math.nan
    lesion = lungs[[f"{side}_lesion_px" for side in SIDES]].sum(axis=1)
    total = float(lesion.sum())
    zoned = (lungs.zone != "").all() and total > 0
    zones = {z: float(lesion[lungs.zone == z].sum()) / total if zoned else math.nan for z in ZONES}
    return ScanSummary(slices=len(table), with_lung=int(table.lung_found.sum()),
                       problems=int((table.problem != "").sum()), opacity=opacity, lesion_mm2=lesion_mm2,
                       lung_mm2=lung_mm2, zones=zones,
                       decision=None if branch is None else decide(table, branch, threshold, rule))
