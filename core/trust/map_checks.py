"""Can a map be trusted? Every CAM method of the global branch, the decision branch's map, and the baselines,
through the Quantus tests (core.trust.quantus_checks) on labelled COVID-SemiSeg slices (every one COVID positive).

Branches:
global   every CAM method (core.explain.cams) over the global SliceClassifier on the input the run feeds it
         (core.trust.models.BranchModel); maps are placed on the slice for localisation as
         core.explain.fidelity places them.
fusion   the run's decision branch: TrainedRun.fusion_cam's map, the whole pipeline re-run on the perturbed
         slice with its routing held as found on the intact slice (core.trust.models.FusionModel).
Beside each branch's methods, the baselines of core.trust.baselines over the same input (for the fusion
branch: inside the frame, where its map lives).

One row per branch x method x metric (mean and std over the slices). `randomisation` is a slice's similarity
averaged over the cascade's units (Quantus's average correlation), `randomisation_last` the similarity once every
unit is re-initialised; `flat` is the share of slices on which the map showed nothing
(core.trust.baselines.is_flat: scored as a random order). The per-unit randomisation curves and the
perturbation curves are kept beside the rows. core.trust.verdicts reads the rows.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from core.data.roots import DataError
from core.explain.cams import CAM_METHODS
from core.explain.fidelity import TOLERANCE_PX, load_labelled, on_slice
from core.trust import quantus_checks as qc
from core.trust.baselines import BASELINES, is_flat
from core.trust.models import FUSION_CAM, BranchModel, FusionModel

DECISION = "fusion"  # the branch the dashboard calls the prediction of a trained run (RunView.decision_branch)
BRANCHES = ("global", DECISION)
SLOW_METHODS = ("scorecam",)  # one forward pass per channel for every map: on request only
DEFAULT_METHODS = tuple(m for m in CAM_METHODS if m not in SLOW_METHODS)
# Ten minutes of a 2-core CPU to itself for the default command (how: train/trust.py's docstring)
DEFAULT_SLICES = 8
METRICS = ("randomisation", "randomisation_last", "faithfulness", "morf", "lerf", "max_sensitivity",
           *qc.LOCALISATION, "flat")
ROW_COLUMNS = ("branch", "method", "kind", "metric", "n", "mean", "std")


@dataclass(frozen=True)
class MapSettings:
    methods: tuple[str, ...] = DEFAULT_METHODS  # the global branch's CAM methods
    slices: int = DEFAULT_SLICES  # the first N labelled COVID-SemiSeg test slices
    seed: int = 0
    tolerance_px: float = TOLERANCE_PX

    def __post_init__(self):
        bad = [m for m in self.methods if m not in CAM_METHODS]
        if bad or not self.methods:
            raise ValueError(f"unknown CAM method(s) {', '.join(bad) or '(none given)'}; "
                             f"choose from {', '.join(CAM_METHODS)}")
        if self.slices < 1:
            raise ValueError(f"slices must be at least 1, got {self.slices}")

    def record(self) -> dict:
        """What the results depend on, the Quantus settings included: part of the cache key."""
        import quantus

        return {**asdict(self), "methods": list(self.methods), "quantus": quantus.__version__,
                "similarity": qc.SIMILARITY, "patches_per_side": qc.PATCHES_PER_SIDE, "regions": qc.REGIONS,
                "fill": qc.FILL, "sensitivity_samples": qc.SENSITIVITY_SAMPLES,
                "sensitivity_radius": qc.SENSITIVITY_RADIUS}


@dataclass
class Record:
    """Per-slice values of one branch x method."""

    branch: str
    method: str
    kind: str  # "method" or "baseline"
    values: dict = field(default_factory=lambda: {m: [] for m in METRICS})
    units: dict = field(default_factory=dict)  # unit -> per-slice similarity
    curves: dict = field(default_factory=lambda: {"morf": [], "lerf": []})

    def add(self, flat: bool, randomisation: dict, faithfulness: dict, sensitivity, localisation: dict) -> None:
        self.values["flat"].append(float(flat))
        sims = np.array([v[0] for v in randomisation.values()], np.float64)
        for unit, v in randomisation.items():
            self.units.setdefault(unit, []).append(float(v[0]))
        self.values["randomisation"].append(float(np.nanmean(sims)) if np.isfinite(sims).any() else float("nan"))
        self.values["randomisation_last"].append(float(sims[-1]))
        for k in ("faithfulness", "morf", "lerf"):
            self.values[k].append(float(faithfulness[k][0]))
        for o in ("morf", "lerf"):
            self.curves[o].append(faithfulness[f"{o}_curve"][0])
        self.values["max_sensitivity"].append(float(sensitivity[0]))
        for k in qc.LOCALISATION:
            self.values[k].append(float(localisation[k][0]))

    def rows(self) -> list[dict]:
        out = []
        for metric, vals in self.values.items():
            v = np.asarray(vals, np.float64)
            ok = v[np.isfinite(v)]
            out.append({"branch": self.branch, "method": self.method, "kind": self.kind, "metric": metric,
                        "n": len(ok), "mean": float(ok.mean()) if len(ok) else None,
                        "std": float(ok.std(ddof=1)) if len(ok) > 1 else None})
        return out


class MapChecks:
    """The map tests of one TrainedRun (see the module docstring)."""

    def __init__(self, tr, settings: MapSettings = MapSettings()):
        self.tr, self.settings = tr, settings
        self.records: dict[tuple[str, str], Record] = {}
        for branch in BRANCHES:
            for m in self.methods(branch):
                self.records[(branch, m)] = Record(branch, m, "method")
            for b in BASELINES:
                self.records[(branch, b)] = Record(branch, b, "baseline")
        self.keys: list[str] = []
        self.probs: dict[str, list[float]] = {b: [] for b in BRANCHES}
        self.lesion_share: list[float] = []

    def methods(self, branch: str) -> tuple[str, ...]:
        return self.settings.methods if branch == "global" else (FUSION_CAM,)

    def _branches(self, a, img: np.ndarray):
        """(branch, wrapper, its input (1, 1, H, W), the map on the slice from a map over that input)."""
        h, w = img.shape
        yield ("global", BranchModel(self.tr.m["global"], self.tr.cfg.image_size), a.inputs["image"].cpu().numpy(),
               lambda m: on_slice(m, a.frame, h, w))
        yield DECISION, FusionModel(self.tr, a), img[None, None].astype(np.float32), lambda m: m

    def slice(self, key: str, img: np.ndarray, mask: np.ndarray) -> None:
        """Every branch x method's tests on one slice."""
        seed = self.settings.seed * 1_000_003 + len(self.keys)
        a = self.tr.analyse(img)
        for branch, model, x, place in self._branches(a, img):
            self.probs[branch].append(float(a.probs[branch]))
            for method in (*self.methods(branch), *BASELINES):
                a0 = model.explain(x, method, seed)
                self.records[(branch, method)].add(
                    is_flat(a0), qc.randomisation(model, x, a0, method, seed),
                    qc.faithfulness(model, x, a0, method, seed), qc.max_sensitivity(model, x, a0, method, seed),
                    qc.localisation(place(a0[0, 0])[None], mask[None], self.settings.tolerance_px))
        self.keys.append(key)
        self.lesion_share.append(float(mask.mean()))

    def run(self, slices: Sequence, progress: bool = True) -> dict:
        """slices: core.data.semiseg.SegSlice list with masks; the first `settings.slices` are measured."""
        from tqdm import tqdm

        chosen = list(slices)[:self.settings.slices]
        if not chosen:
            raise DataError("no labelled slices to measure")
        for sl in tqdm(chosen, desc="trust: maps", unit="slice", disable=not progress):
            img, mask = load_labelled(sl)
            if not mask.any():
                raise DataError(f"{sl.mask}: empty lesion mask (every slice here should be COVID positive)")
            self.slice(sl.key, img, mask)
        return self.result()

    def result(self) -> dict:
        recs = self.records.values()
        return {"settings": self.settings.record(), "n_slices": len(self.keys), "slices": list(self.keys),
                "lesion_area_share": float(np.mean(self.lesion_share)),
                "mean_prob": {b: float(np.mean(p)) for b, p in self.probs.items()},
                "rows": [row for r in recs for row in r.rows()],
                "randomisation_units": {f"{r.branch}/{r.method}": {u: float(np.nanmean(v)) for u, v in r.units.items()}
                                        for r in recs},
                "perturbation_curves": {f"{r.branch}/{r.method}": {o: np.mean(c, 0).tolist()
                                                                   for o, c in r.curves.items()} for r in recs}}


def csv_rows(rows: list[dict]) -> list[list]:
    """trust.csv: a header and one line per branch x method x metric."""
    fmt = lambda v: "" if v is None else (round(v, 6) if isinstance(v, float) else v)
    return [list(ROW_COLUMNS)] + [[fmt(r[c]) for c in ROW_COLUMNS] for r in rows]
