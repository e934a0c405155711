"""Explanation fidelity: do the saliency maps sit in the lesions, do the pixels they point at drive the decision?

The paper (Nguyen et al. 2020) only shows, qualitatively, that CAMs of COVID slices fall on the
lesions. Here it is measured on slices with expert lesion masks (COVID-SemiSeg test: every slice
COVID positive). For each slice and each saliency map (resized to the mask's resolution):

pointing game   does the map's maximum fall inside the lesion mask dilated by `tolerance_px` pixels
                (15 by default, at the mask's original resolution, as is customary)? When several
                pixels share the maximum (a flat map), the hit is the share of them inside: the
                expected hit of a random pick among them, so a uniform map scores the dilated-mask
                area share (chance).
energy share    sum of the map inside the (undilated) mask / the map's total sum. Undefined (NaN,
                counted in `n_empty_maps`) for an all-zero map.
deletion        the most salient pixels of the model's input are replaced (slice mean, or 0) in
                steps of 10%, the model's probability is recorded at each step, and the area under
                that curve over the removed fraction [0, 1] is reported (lower = the map found the
                pixels the decision rests on). Ties in the saliency order are broken at random.

Baselines, per branch, so a reader knows what chance looks like:
centre-gaussian  a Gaussian at the centre (sigma = 0.25 of each side): "lesions are central".
uniform          a flat map: its pointing hit is the dilated lesion's area share, its energy share
                 the lesion's area share (exactly chance); its deletion order is a random order of
                 single pixels.
random-blobs     random values on a grid as coarse as a CAM's (image_size / 32 a side), resized
                 bilinearly: a random map with a CAM's smoothness. Its deletion removes random
                 blobs, like a CAM's does; pixel-random deletion (uniform) instead sprinkles
                 salt-and-pepper noise, which a CNN can react to much more strongly than to the
                 same share of pixels removed in blobs, so compare CAM deletion AUCs with this row.
For the heatmap branch the baselines live inside the crop box, like its CAM (`box-...`): they
say what the crop box alone gives.

Branches:
global   every CAM method over the global SliceClassifier on the slice; deletion on its input.
heatmap  every CAM method over the heatmap classifier on its Eq. 1/Eq. 2 crop, pasted back into
         the crop box on the slice (zero outside); deletion (only on request) on the crop, its input.
fusion   TrainedRun.fusion_cam (the fusion FC weights over every branch's conv map); deletion on
         the slice itself, re-run through the whole pipeline with its routing (heatmap box, lung
         crop boxes, lesion flags) held as found on the intact slice.
`mean_prob` of a row is its branch's mean probability (of COVID) on the intact slices: a CAM of a
decision the model does not make (all these slices are COVID) explains little.

Note: the fusion map's lung parts sit in boxes found by the Inf-Net segmenter, which was trained
on lesion masks; its pointing score is not the classifier's alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from core.data.errors import DataError
from core.data.imaging import check_mask_shape, read_mask, read_slice
from core.explain.cams import make_cam
from core.inference import branch_inputs, quantise8
from core.inputs.boxes import FULL, Box
from core.inputs.harmonise import from_frame, harmonise
from core.models import network
from core.results.metrics import wilson

TOLERANCE_PX = 15
STEPS = 10
GAUSS_SIGMA = 0.25
DEFAULT_METHODS = ("eq1", "cam", "gradcam", "gradcam++", "eigencam")
FILLS = ("mean", "zero")
BASELINES = ("centre-gaussian", "uniform", "random-blobs")
BLOB_STRIDE = 32  # random-blobs grid: one random value per backbone output cell (image_size / 32 a side)
BRANCHES = ("global", "heatmap", "fusion")
DEFAULT_DELETION = ("global", "fusion")  # the heatmap branch's deletion (on its crop) on request
CSV_COLUMNS = ("branch", "method", "kind", "n", "pointing_hit_rate", "pointing_ci_low", "pointing_ci_high",
               "energy_share_mean", "energy_share_std", "deletion_auc_mean", "deletion_auc_std", "mean_prob",
               "n_empty_maps")


# ---- maps -------------------------------------------------------------------------------------
def resize_map(smap, h: int, w: int) -> np.ndarray:
    """(h0, w0) map (array or tensor) -> (h, w) float32, bilinear."""
    t = torch.as_tensor(np.asarray(smap, dtype=np.float32) if not torch.is_tensor(smap) else smap).float()
    if tuple(t.shape) == (h, w):
        return t.cpu().numpy().astype(np.float32, copy=True)
    out = F.interpolate(t.cpu()[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    return out.numpy()


def centre_gaussian(h: int, w: int, sigma: float = GAUSS_SIGMA) -> np.ndarray:
    """A Gaussian at the centre, sigma a fraction of each side; peak 1."""
    yy = (np.arange(h, dtype=np.float32) + 0.5) / h - 0.5
    xx = (np.arange(w, dtype=np.float32) + 0.5) / w - 0.5
    return np.exp(-(yy[:, None] ** 2 + xx[None, :] ** 2) / (2 * sigma * sigma)).astype(np.float32)


def uniform_map(h: int, w: int) -> np.ndarray:
    return np.ones((h, w), np.float32)


def random_blobs(coarse: np.ndarray, h: int, w: int) -> np.ndarray:
    """A smooth random map: random values on a coarse grid (a CAM's resolution), bilinearly resized."""
    return resize_map(coarse, h, w)


def baseline_map(name: str, h: int, w: int, coarse: np.ndarray | None = None) -> np.ndarray:
    if name == "centre-gaussian":
        return centre_gaussian(h, w)
    if name == "uniform":
        return uniform_map(h, w)
    if name == "random-blobs":
        if coarse is None:
            raise ValueError("random-blobs needs its coarse random grid")
        return random_blobs(coarse, h, w)
    raise ValueError(f"unknown baseline {name!r}")


def on_slice(smap, frame: Box, h: int, w: int) -> np.ndarray:
    """A map over a run's input frame (core.inputs.harmonise: the whole slice, or its lung field's box)
    onto the (h, w) original slice; zero where the frame does not reach."""
    if frame == FULL:
        return resize_map(smap, h, w)
    arr = smap.cpu().numpy() if torch.is_tensor(smap) else np.asarray(smap)
    return from_frame(arr.astype(np.float32), frame, h, w)


def paste_map(part, box: Box, h: int, w: int) -> np.ndarray:
    """A map over a crop, resized into its box ([0, 1] fractions) on a zero (h, w) canvas."""
    canvas = np.zeros((h, w), np.float32)
    y0, x0, y1, x1 = box.pixels(h, w)
    canvas[y0:y1, x0:x1] = resize_map(part, y1 - y0, x1 - x0)
    return canvas


# ---- localisation metrics ---------------------------------------------------------------------
def tolerance_region(mask: np.ndarray, tolerance_px: float = TOLERANCE_PX) -> np.ndarray:
    """The mask dilated by a disc of `tolerance_px` pixels (Euclidean)."""
    mask = np.asarray(mask, bool)
    if tolerance_px <= 0 or not mask.any():
        return mask.copy()
    return ndimage.distance_transform_edt(~mask) <= tolerance_px


def pointing_hit(smap: np.ndarray, region: np.ndarray) -> float:
    """1.0 if the map's maximum lies in `region`, 0.0 if not; for tied maxima, the share of them inside."""
    smap = np.asarray(smap, np.float64)
    if smap.shape != region.shape:
        raise ValueError(f"map {smap.shape} and mask {region.shape} differ in shape")
    if not np.isfinite(smap).all():
        raise ValueError("saliency map holds NaN or infinite values")
    mx = smap.max()
    top = smap >= mx - 1e-6 * max(abs(mx), 1e-12)
    return float(region[top].mean())


def energy_share(smap: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's (non-negative) mass inside the mask; NaN for an all-zero map."""
    s = np.clip(np.asarray(smap, np.float64), 0, None)
    if s.shape != mask.shape:
        raise ValueError(f"map {s.shape} and mask {mask.shape} differ in shape")
    total = s.sum()
    return float(s[np.asarray(mask, bool)].sum() / total) if total > 0 else float("nan")


# ---- deletion ---------------------------------------------------------------------------------
def deletion_ranks(smap: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W) int: 0 for the most salient pixel; ties broken at random."""
    flat = np.asarray(smap, np.float64).ravel()
    order = np.lexsort((rng.random(flat.size), -flat))
    ranks = np.empty(flat.size, np.int64)
    ranks[order] = np.arange(flat.size)
    return ranks.reshape(np.shape(smap))


def deletion_inputs(image: np.ndarray, smap: np.ndarray, steps: int = STEPS, fill: str = "mean",
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """(steps + 1, H, W): the image with the top 0, 1/steps, ..., 100% of pixels (by `smap`) replaced."""
    image = np.asarray(image, np.float32)
    if image.shape != np.shape(smap):
        raise ValueError(f"image {image.shape} and map {np.shape(smap)} differ in shape")
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    value = float(image.mean()) if fill == "mean" else 0.0
    ranks = deletion_ranks(smap, rng or np.random.default_rng(0))
    cuts = np.round(np.linspace(0, image.size, steps + 1)).astype(np.int64)
    return np.where(ranks[None] < cuts[:, None, None], np.float32(value), image[None]).astype(np.float32)


def deletion_auc(probs: Sequence[float]) -> float:
    """Area under the probability curve over the removed fraction [0, 1] (trapezoid rule)."""
    p = np.asarray(probs, np.float64)
    if len(p) < 2:
        raise ValueError("a deletion curve needs at least two points")
    x = np.linspace(0.0, 1.0, len(p))
    return float(np.sum((p[1:] + p[:-1]) / 2 * np.diff(x)))


def deletion_curves(predict: Callable[[np.ndarray], np.ndarray], image: np.ndarray, maps: dict,
                    steps: int = STEPS, fill: str = "mean", seed: int = 0) -> dict:
    """{name: (steps + 1,) probabilities}: every map's deleted images scored in one `predict` call.

    The intact and the fully deleted image are the same for every map: they are scored once."""
    names = list(maps)
    if not names:
        return {}
    stacks = [deletion_inputs(image, maps[n], steps, fill, np.random.default_rng([seed, i]))
              for i, n in enumerate(names)]
    ends = stacks[0][[0, -1]]
    probs = np.asarray(predict(np.concatenate([ends] + [st[1:-1] for st in stacks])), np.float64)
    first, last, mids = probs[0], probs[1], probs[2:].reshape(len(names), steps - 1)
    return {n: np.concatenate([[first], mids[i], [last]]) for i, n in enumerate(names)}


# ---- the fusion decision with its routing held ---------------------------------------------------
def routed_inputs(cfg, a, slices: torch.Tensor, device) -> dict:
    """(B, 1, H, W) slices at their original size -> the fusion pipeline's inputs, with the routing (lung field,
    heatmap box, lung crop boxes, lesion flags) held as found on the intact slice `a` (a SliceAnalysis): the batch
    core.explain.fusion_cam and `routed_logit` read."""
    xs = slices[:, 0].cpu().numpy()
    prep = lambda s, size: quantise8(harmonise(s, cfg.input, size, a.field_on_slice).image)
    image = torch.from_numpy(np.stack([prep(s, cfg.image_size) for s in xs]))[:, None].to(device)
    return branch_inputs(cfg, image, [prep(s, cfg.hires_size) for s in xs], a.box, a.side_boxes, device)


def routed_logit(models: dict, batch: dict) -> torch.Tensor:
    """(B,) fusion logit of `routed_inputs`' batch through the run's models (keyed by stage)."""
    return models["fusion"](network.vectors(models, batch))


# ---- summary ----------------------------------------------------------------------------------
@dataclass
class Record:
    """Per-slice values of one branch x method row."""

    branch: str
    method: str
    kind: str  # "cam" or "baseline"
    hits: list = field(default_factory=list)
    energy: list = field(default_factory=list)
    aucs: list = field(default_factory=list)
    curves: list = field(default_factory=list)
    p0: list = field(default_factory=list)

    def summary(self) -> dict:
        n = len(self.hits)
        hits = float(np.sum(self.hits)) if n else 0.0
        e = np.asarray(self.energy, np.float64)
        ok = e[np.isfinite(e)]
        a = np.asarray(self.aucs, np.float64)
        row = {"branch": self.branch, "method": self.method, "kind": self.kind, "n": n,
               "pointing_hit_rate": hits / n if n else None, "pointing_ci": wilson(hits, n),
               "energy_share_mean": float(ok.mean()) if len(ok) else None,
               "energy_share_std": float(ok.std(ddof=1)) if len(ok) > 1 else None,
               "n_empty_maps": int(len(e) - len(ok)),
               "deletion_auc_mean": float(a.mean()) if len(a) else None,
               "deletion_auc_std": float(a.std(ddof=1)) if len(a) > 1 else None,
               "deletion_curve": [float(v) for v in np.mean(self.curves, 0)] if self.curves else None,
               "mean_prob": float(np.mean(self.p0)) if self.p0 else None}
        return row


def clean(obj):
    """NaN/inf -> None, numpy scalars -> Python: strict JSON."""
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def csv_rows(rows: list[dict]) -> list[list]:
    out = [list(CSV_COLUMNS)]
    for r in rows:
        lo, hi = r["pointing_ci"]
        vals = {**r, "pointing_ci_low": lo, "pointing_ci_high": hi}
        out.append(["" if vals.get(c) is None else (round(vals[c], 6) if isinstance(vals[c], float) else vals[c])
                    for c in CSV_COLUMNS])
    return out


# ---- the run ----------------------------------------------------------------------------------
def load_labelled(seg_slice) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) slice in [0, 1] and its boolean lesion mask (checked to match)."""
    img = read_slice(seg_slice.image)
    if seg_slice.mask is None:
        raise DataError(f"{seg_slice.image}: no lesion mask")
    mask = check_mask_shape(read_mask(seg_slice.mask), img.shape, str(seg_slice.mask)) > 0
    return img, mask


class FidelityRunner:
    """Fidelity of one TrainedRun on labelled slices (see the module docstring)."""

    def __init__(self, tr, methods: Sequence[str] = DEFAULT_METHODS, tolerance_px: float = TOLERANCE_PX,
                 steps: int = STEPS, fill: str = "mean", deletion: Sequence[str] = DEFAULT_DELETION,
                 chunk: int = 8, batch_size: int = 32, seed: int = 0):
        bad = [b for b in deletion if b not in BRANCHES]
        if bad:
            raise ValueError(f"deletion branches must be among {BRANCHES}, got {bad}")
        if steps < 1:
            raise ValueError("steps must be at least 1")
        if fill not in FILLS:
            raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
        self.tr, self.methods, self.tolerance_px = tr, list(methods), tolerance_px
        self.steps, self.fill, self.chunk, self.batch_size, self.seed = steps, fill, chunk, batch_size, seed
        self.deletion = [b for b in BRANCHES if b in deletion]
        self.records: dict[tuple[str, str], Record] = {}
        for m in self.methods:
            self._record("global", m, "cam")
        for b in BASELINES:
            self._record("global", b, "baseline")
        for m in self.methods:
            self._record("heatmap", m, "cam")
        for b in BASELINES:
            self._record("heatmap", f"box-{b}", "baseline")
        self._record("fusion", "fusion-cam", "cam")
        for b in BASELINES:
            self._record("fusion", b, "baseline")
        self.lesion_share, self.region_share, self.keys = [], [], []

    def _record(self, branch, method, kind):
        self.records[(branch, method)] = Record(branch, method, kind)

    # -- model calls
    def _scores(self, forward, images: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(images), self.batch_size):
                x = torch.from_numpy(images[i:i + self.batch_size])[:, None].to(self.tr.device)
                out.append(torch.sigmoid(forward(x).float()).cpu().numpy().reshape(-1))
        return np.concatenate(out)

    def _fusion_predict(self, a):
        """Slices at their original size -> fusion probability, routing (boxes, flags) as on the intact slice."""
        tr = self.tr
        return lambda x: routed_logit(tr.m, routed_inputs(tr.cfg, a, x, tr.device))

    # -- one chunk of slices
    def _chunk(self, items: list[tuple[str, np.ndarray, np.ndarray]], progress) -> None:
        tr, cfg = self.tr, self.tr.cfg
        analyses = [tr.analyse(img) for _, img, _ in items]
        x = torch.cat([a.inputs["image"] for a in analyses]).to(tr.device)
        c = torch.cat([a.inputs["crop"] for a in analyses]).to(tr.device)
        gmaps, hmaps = {}, {}
        for name in self.methods:
            with make_cam(name, tr.m["global"]) as cam:
                gmaps[name] = cam(x).float().detach().cpu()
            with make_cam(name, tr.m["heatmap"]) as cam:
                hmaps[name] = cam(c).float().detach().cpu()
        s = cfg.image_size
        for i, ((key, img, mask), a) in enumerate(zip(items, analyses)):
            h, w = mask.shape
            region = tolerance_region(mask, self.tolerance_px)
            self.keys.append(key)
            self.lesion_share.append(float(mask.mean()))
            self.region_share.append(float(region.mean()))
            seed = self.seed * 1_000_003 + len(self.keys)  # deletion tie-breaks
            fm = tr.fusion_cam(a, size=s)
            # maps at the mask's resolution (localisation) and at each branch's input (deletion)
            loc = {("global", n): on_slice(gmaps[n][i], a.frame, h, w) for n in self.methods}
            loc.update({("heatmap", n): on_slice(paste_map(hmaps[n][i], a.box, s, s), a.frame, h, w)
                        if a.frame != FULL else paste_map(hmaps[n][i], a.box, h, w) for n in self.methods})
            loc[("fusion", "fusion-cam")] = on_slice(fm, a.frame, h, w)
            rng = np.random.default_rng([self.seed, len(self.keys)])
            grid = max(2, s // BLOB_STRIDE)
            coarse_slice, coarse_crop = rng.random((grid, grid)), rng.random((grid, grid))
            y0, x0, y1, x1 = a.box.pixels(h, w)
            for b in BASELINES:
                loc[("global", b)] = loc[("fusion", b)] = baseline_map(b, h, w, coarse_slice)
                if a.frame == FULL:
                    loc[("heatmap", f"box-{b}")] = paste_map(baseline_map(b, y1 - y0, x1 - x0, coarse_crop), a.box, h, w)
                else:
                    by0, bx0, by1, bx1 = a.box.pixels(s, s)
                    part = paste_map(baseline_map(b, by1 - by0, bx1 - bx0, coarse_crop), a.box, s, s)
                    loc[("heatmap", f"box-{b}")] = on_slice(part, a.frame, h, w)
            for k, smap in loc.items():
                r = self.records[k]
                r.hits.append(pointing_hit(smap, region))
                r.energy.append(energy_share(smap, mask))
                r.p0.append(a.probs[k[0]])
            # deletion: global on its input, heatmap on its crop, fusion on the slice
            g_in = {n: resize_map(gmaps[n][i], s, s) for n in self.methods}
            g_in.update({b: baseline_map(b, s, s, coarse_slice) for b in BASELINES})
            h_in = {n: resize_map(hmaps[n][i], s, s) for n in self.methods}
            h_in.update({f"box-{b}": baseline_map(b, s, s, coarse_crop) for b in BASELINES})
            f_in = {"fusion-cam": loc[("fusion", "fusion-cam")], **{b: loc[("fusion", b)] for b in BASELINES}}
            jobs = (("global", a.inputs["image"][0, 0].cpu().numpy(), g_in, lambda t: tr.m["global"]({"image": t})),
                    ("heatmap", a.inputs["crop"][0, 0].cpu().numpy(), h_in, lambda t: tr.m["heatmap"]({"crop": t})),
                    ("fusion", img, f_in, self._fusion_predict(a)))
            for branch, image, maps, forward in jobs:
                if branch not in self.deletion:
                    continue
                curves = deletion_curves(lambda arr: self._scores(forward, arr), image, maps, self.steps,
                                         self.fill, seed)
                for n, curve in curves.items():
                    r = self.records[(branch, n)]
                    r.curves.append(curve)
                    r.aucs.append(deletion_auc(curve))
            if progress is not None:
                progress.update(1)

    def run(self, slices, progress: bool = True) -> dict:
        """slices: SegSlice list (with masks). Returns {"rows": [...], ...}."""
        from tqdm import tqdm

        if not slices:
            raise DataError("no labelled slices to measure")
        bar = tqdm(total=len(slices), desc="fidelity", unit="slice", disable=not progress)
        try:
            for i in range(0, len(slices), self.chunk):
                items = []
                for sl in slices[i:i + self.chunk]:
                    img, mask = load_labelled(sl)
                    if not mask.any():
                        raise DataError(f"{sl.mask}: empty lesion mask (every slice here should be COVID positive)")
                    items.append((sl.key, img, mask))
                self._chunk(items, bar)
        finally:
            bar.close()
        return {"n_slices": len(self.keys), "slices": list(self.keys),
                "lesion_area_share": float(np.mean(self.lesion_share)),
                "tolerance_region_share": float(np.mean(self.region_share)),
                "rows": [r.summary() for r in self.records.values()]}


def write_fidelity(run, data_root, methods: Sequence[str] = DEFAULT_METHODS, limit: int | None = None,
                   tolerance_px: float = TOLERANCE_PX, steps: int = STEPS, fill: str = "mean",
                   deletion: Sequence[str] = DEFAULT_DELETION, seed: int = 0, device="cpu", progress: bool = True) -> dict:
    """FidelityRunner on the first `limit` (all: None) labelled COVID-SemiSeg test slices under `data_root`, of
    the run folder `run` (core.runs.runfolder.RunFolder), written to RUN/fidelity.json and fidelity.csv."""
    import csv
    import io
    import json
    import time

    from core.data.semiseg import read_labelled
    from core.inference import TrainedRun
    from core.runs.checkpoint import atomic_write_text

    if not 0 <= tolerance_px < float("inf"):
        raise DataError(f"--tolerance must be a finite number >= 0, got {tolerance_px}")
    slices = read_labelled(data_root, "test")
    if not slices:
        raise DataError(f"{data_root}: no labelled COVID-SemiSeg test slices")
    slices = slices[:limit] if limit else slices
    tr = TrainedRun.load(run.path, device=device)
    t0 = time.time()
    runner = FidelityRunner(tr, methods, tolerance_px=tolerance_px, steps=steps, fill=fill, deletion=deletion,
                            seed=seed)
    result = runner.run(slices, progress=progress)
    out = {"run": str(run.path), "data_root": str(data_root), "split": "COVID-SemiSeg test (all COVID positive)",
           "methods": list(methods), "tolerance_px": tolerance_px, "steps": steps, "fill": fill,
           "deletion_branches": runner.deletion, "seed": seed, "seconds": round(time.time() - t0, 1), **result}
    if run.config.get("synthetic"):
        out = {"data": "synthetic phantoms (not a real-data result)", **out}
    out = clean(out)
    atomic_write_text(run.path / "fidelity.json", json.dumps(out, indent=1))
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(csv_rows(out["rows"]))
    atomic_write_text(run.path / "fidelity.csv", buf.getvalue())
    run.log(f"fidelity: {out['n_slices']} slices, methods {','.join(methods)}, {out['seconds']} s")
    return out
