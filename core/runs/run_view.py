"""Read-only view of a trained run for the dashboard: predictions, metrics, cached maps, 3D maps.

The dashboard holds no model math: it asks this class (and core.inference.TrainedRun for live
re-scoring) for everything it shows. Nothing here trains; 3D maps are computed once and cached
in the run's features/ folder.
"""
from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core.config import PipelineConfig
from core.data.covidct import read_covidct
from core.explain.attention import Box, upsample_maps
from core.explain.embedding import METHODS as EMBEDDINGS
from core.explain.embedding import embed_3d, nearest, place
from core.inputs.fields import FieldFinder
from core.inputs.frames import frame_image, frame_lung
from core.models.network import FEATURE_SETS as VECTOR_SETS
from core.models.network import SIDES, STAGES
from core.results.metrics import METRICS, binary_metrics
from core.results.predictions import BASELINES, BRANCHES, operating_point, read_predictions
from core.runs import feature_cache as fc
from core.runs.progress import PROGRESS_FILE
from core.runs.runfolder import RunFolder, read_json_object, read_table, safe_child

PAPER_RESULTS = Path(__file__).resolve().parents[2] / "assets" / "paper_results.csv"


def paper_results() -> pd.DataFrame:
    """The paper's published numbers (assets/paper_results.csv): backbone, init, branch, accuracy, f1, auc."""
    return pd.read_csv(PAPER_RESULTS)


def list_runs(runs_dir: str | Path, in_training: bool = False) -> list[str]:
    """Run folders under runs_dir that hold predictions, newest first; `in_training`: also those whose
    training has started (a progress log, core.runs.progress) and has no predictions yet."""
    d = Path(runs_dir)
    if not d.is_dir():
        return []
    kept = ("predictions.csv", PROGRESS_FILE) if in_training else ("predictions.csv",)
    runs = [p for p in d.iterdir() if (p / "config.json").exists() and any((p / f).exists() for f in kept)]
    return [p.name for p in sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)]


class RunView:
    def __init__(self, runs_dir: str | Path, name: str):
        self.run = RunFolder(safe_child(runs_dir, name))  # a name cannot leave runs_dir

    @property
    def name(self) -> str:
        return self.run.path.name

    @cached_property
    def config(self) -> dict:
        """config.json as saved: the data location, timings, the second source's rows (the settings: `pipeline`)."""
        return self.run.config

    @cached_property
    def pipeline(self) -> PipelineConfig:
        """The run's settings (PipelineConfig.of_run: a run saved in an older format is refused, naming the
        command that migrates it)."""
        return PipelineConfig.of_run(self.run)

    @property
    def synthetic(self) -> bool:
        return bool(self.config.get("synthetic"))

    @cached_property
    def predictions(self) -> pd.DataFrame:
        df = read_predictions(self.run)
        for b in self.branches_in(df):
            df[f"p_{b}"] = df[f"p_{b}"].astype(float)
        top = self.decision_branch(df)
        df["p"] = df[f"p_{top}"]
        # Each branch's operating point is chosen on the data that choose (core.results.predictions).
        self._thresholds = {b: operating_point(df, b, self.run) for b in self.branches_in(df)}
        t = self._thresholds[top]
        df["pred"] = (df["p"] >= t).astype(int)
        df["correct"] = df["pred"] == df["label"]
        df["margin"] = (df["p"] - t).abs()
        df["outcome"] = np.select([df.correct & (df.label == 1), df.correct & (df.label == 0), df.label == 1],
                                  ["true positive", "true negative", "false negative"], "false positive")
        deciders = [b for b in self.branches_in(df) if b not in BASELINES]
        votes = df[[f"p_{b}" for b in deciders]] >= pd.Series({f"p_{b}": self._thresholds[b] for b in deciders})
        df["disagreement"] = votes.nunique(axis=1) > 1
        df = df.reset_index(drop=True)
        return df

    @property
    def thresholds(self) -> dict[str, float]:
        """Each branch's operating point (core.results.predictions.operating_point)."""
        _ = self.predictions
        return self._thresholds

    @staticmethod
    def branches_in(df: pd.DataFrame) -> list[str]:
        return [b for b in BRANCHES if f"p_{b}" in df and (df[f"p_{b}"] != "").all()]

    def decision_branch(self, df=None) -> str:
        """The branch whose probability the dashboard calls 'the prediction': the two-step decision when
        fitted, else fusion when trained (never a baseline)."""
        return [b for b in self.branches_in(self.predictions if df is None else df) if b not in BASELINES][-1]

    def metrics(self, split: str, n_boot: int = 500) -> dict:
        part = self.predictions[self.predictions.split == split]
        return {b: binary_metrics(part.label.to_numpy(), part[f"p_{b}"].to_numpy(), threshold=self.thresholds[b],
                                  n_boot=n_boot)
                for b in self.branches_in(self.predictions)}

    def stored_metrics(self, split: str) -> dict | None:
        """metrics() of `split` as `python -m train evaluate` wrote them (metrics_<split>.json), when that
        file is newer than the predictions and holds every metric of every branch; else None."""
        f = self.run.path / f"metrics_{split}.json"
        try:
            if f.stat().st_mtime_ns < self.run.predictions_csv.stat().st_mtime_ns:
                return None
            m = json.loads(f.read_text())
        except (OSError, ValueError):
            return None
        want = self.branches_in(self.predictions)
        ok = isinstance(m, dict) and set(want) <= set(m) and all(
            isinstance(m[b], dict) and all(k in m[b] for k in METRICS) for b in want)
        return {b: m[b] for b in want} if ok else None

    def paper_table(self) -> pd.DataFrame:
        return paper_results()[["backbone", "branch", "accuracy", "f1", "auc"]]

    # ---- per-slice data ------------------------------------------------------------------
    @cached_property
    def slice_paths(self) -> dict[str, Path]:
        root = self.config.get("data_root")
        if not root or not Path(root).exists():
            raise FileNotFoundError(f"{self.name}: its data location {root!r} is not available here")
        return {s.key: s.path for s in read_covidct(root)}

    @property
    def input_mode(self) -> str:
        """What the run's networks see (core.inputs.harmonise)."""
        return self.pipeline.input

    @cached_property
    def fields(self) -> FieldFinder:
        """How the run finds a slice's lung field (core.inputs.fields; its segmenter loads only on a cache miss)."""
        return FieldFinder.of_run(self.run, self.pipeline)

    def image(self, key: str, size: int = 224) -> np.ndarray:
        """(size, size) uint8 slice, as the run's networks see it (maps and boxes lie on it)."""
        return frame_image(self.slice_paths[key], size, self.input_mode, self.fields)

    def lung_field(self, key: str, size: int = 224) -> np.ndarray | None:
        """(size, size) bool lung field on `image(key)`, or None when the run's input uses none."""
        return frame_lung(self.slice_paths[key], size, self.input_mode, self.fields)

    def _own(self, name: str) -> dict:
        hit = fc.current(self.run.features_dir, name)
        if hit is None:
            raise FileNotFoundError(f"{self.name}: no cached {name!r} features; run `python -m train pipeline`")
        return hit

    @cached_property
    def _global(self) -> dict:
        return self._own("global")

    @cached_property
    def _crops(self) -> dict:
        return self._own("heatmap-crops")

    @cached_property
    def _lesions(self) -> dict:
        return self._own("lesions")

    @cached_property
    def _fusion(self) -> dict:
        return self._own("fusion")

    @cached_property
    def _fusion_cam(self) -> dict:
        return self._own("fusion-cam")

    @property
    def feature_keys(self) -> list[str]:
        """Slice keys in the feature caches' order: the rows of features() and embedding()."""
        return list(self._fusion["keys"])

    def _row(self, key: str) -> int:
        # Feature caches are in the data set's slice order, as is predictions.csv when written by the pipeline.
        keys = self._fusion["keys"]
        return keys.index(key)

    def attention_map(self, key: str, size: int = 224) -> np.ndarray:
        """The global branch's attention map (Eq. 1 or the run's CAM method) at `size`."""
        m = self._global["maps"][self._row(key)]
        return upsample_maps(m[None].float(), size)[0].numpy()

    def heatmap_box(self, key: str) -> Box:
        return Box(*self._crops["boxes"][self._row(key)].tolist())

    def lesion_prob(self, key: str) -> np.ndarray:
        return self._lesions["prob"][self._row(key)].float().numpy() / 255

    def lesion_boxes(self, key: str) -> list[Box]:
        return [Box(*b) for b in self._lesions["lesion_boxes"][self._row(key)].tolist()]

    def side_boxes(self, key: str) -> dict:
        i = self._row(key)
        out = {}
        for j, side in enumerate(SIDES):
            out[side.name] = Box(*self._lesions["side_boxes"][i, j].tolist()) if bool(self._lesions["present"][i, j]) else None
        return out

    def fusion_cam(self, key: str) -> np.ndarray:
        return self._fusion_cam["cam"][self._row(key)].float().numpy()

    # ---- feature space -------------------------------------------------------------------
    FEATURE_SETS = ("fusion", *VECTOR_SETS)

    def features(self, which: str = "fusion") -> np.ndarray:
        v = self._fusion["vectors"]
        if which == "fusion":
            return self._fusion["standardised"].numpy()
        if which not in VECTOR_SETS:
            raise ValueError(f"unknown feature set {which!r}; choose one of {', '.join(self.FEATURE_SETS)}")
        x = torch.cat([v[k].float().flatten(1) for k in VECTOR_SETS[which]], 1).numpy()
        return (x - x.mean(0)) / np.maximum(x.std(0), 1e-6)

    def embedding(self, method: str = "tsne", which: str = "fusion", seed: int = 0) -> np.ndarray:
        """(N, 3) coordinates in the feature caches' slice order; computed once, cached on disk."""
        x = self.features(which)
        parts = {"method": method, "which": which, "seed": seed, "features": hashlib.sha256(x.tobytes()).hexdigest()[:16]}
        return fc.cached(self.run.features_dir, f"embedding-{method}-{which}", parts,
                         lambda: {"xyz": torch.from_numpy(embed_3d(x, method, seed))})["xyz"].numpy()

    def derived(self, name: str, parts: dict, compute) -> dict:
        """An entry of the run's feature cache drawn from its own entries (features/index.json): keyed by
        `parts` and by those entries, so a retrained stage makes a new one."""
        index = self.run.features_dir / fc.INDEX
        sources = read_json_object(index) if index.exists() else {}
        return fc.cached(self.run.features_dir, name, {**parts, "from": sources}, compute)

    def precompute(self, hover_cards=None) -> None:
        """What the Map page reads on its first visit, computed now: every 3D map (each method x feature set)
        and, with `hover_cards` (a function of this view that caches them, core.pictures.slice_images), the hover
        cards. The after-training stage "precompute" (core/after_training.py) calls it."""
        for method in EMBEDDINGS:
            for which in self.FEATURE_SETS:
                self.embedding(method, which)
        if hover_cards is not None:
            hover_cards(self)

    def neighbours(self, key: str, k: int = 6, which: str = "fusion") -> list[tuple[str, float]]:
        x = self.features(which)
        idx, d = nearest(x, x[self._row(key)], k + 1)
        keys = self._fusion["keys"]
        return [(keys[i], float(di)) for i, di in zip(idx, d) if keys[i] != key][:k]

    def fusion_input(self, key: str) -> np.ndarray:
        """The stored standardised fusion-layer input of a slice of the run."""
        return self.features("fusion")[self._row(key)]

    def nearest_keys(self, vector: np.ndarray, k: int = 6) -> list[tuple[str, float]]:
        """(key, distance) of the run's k slices nearest a new slice's fusion-layer input."""
        idx, d = nearest(self.features("fusion"), vector, k)
        keys = self._fusion["keys"]
        return [(keys[i], float(di)) for i, di in zip(idx, d)]

    def place(self, vector: np.ndarray, method: str = "tsne") -> np.ndarray:
        """3D position of a new slice (its fusion-layer input) in the run's fusion-feature map."""
        return place(self.features("fusion"), self.embedding(method, "fusion"), vector)

    def out_of_range(self, vector: np.ndarray) -> tuple[float, float]:
        """(largest |standardised fusion input| of `vector`, the largest on the training split; on every
        slice when the run has no training split). Much larger than the training split's: the fusion
        probability extrapolates."""
        x = self.features("fusion")
        split = self.predictions.set_index("key").split
        train = np.array([split.get(k) == "train" for k in self._fusion["keys"]], dtype=bool)
        ref = float(np.abs(x[train]).max()) if train.any() else float(np.abs(x).max())
        return float(np.abs(vector).max()), ref

    def timings(self) -> dict:
        return self.config.get("timings", {})

    def timings_table(self) -> pd.DataFrame:
        """stage, seconds: the run's recorded stage timings, without the total."""
        return pd.DataFrame([{"stage": k, "seconds": float(v)} for k, v in self.timings().items() if k != "total"],
                            columns=["stage", "seconds"])

    def run_table(self, filename: str) -> pd.DataFrame | None:
        """A table a command wrote into the run folder (fidelity.csv, branch_probe.csv), if there."""
        f = self.run.path / filename
        return read_table(f) if f.exists() else None

    def run_json(self, filename: str) -> dict | None:
        """A result a command wrote into the run folder (shortcut.json), if there."""
        f = self.run.path / filename
        return read_json_object(f) if f.exists() else None

    def stage_summary(self, stage: str) -> dict | None:
        f = self.run.stage(stage) / "summary.json"
        return read_json_object(f) if f.exists() else None

    def stage_table(self) -> pd.DataFrame:
        """One row per trained stage (pipeline order): best epoch, epochs run, best val AUC, recipe name."""
        rows = []
        for stage in STAGES:
            s = self.stage_summary(stage)
            if not s:
                continue
            recipe = s.get("recipe")
            rows.append({"stage": stage, "best epoch": s.get("best_epoch"), "epochs run": s.get("epochs_run"),
                         "best val AUC": s.get("best_val_auc"),
                         "recipe": (recipe or {}).get("name") if isinstance(recipe, dict) else recipe})
        return pd.DataFrame(rows)
