"""The Data page's pictures of one slice, and those of every source's first pages drawn ahead of the first visit.

Pure drawing and model calls (numpy, PIL, torch), no Streamlit: dashboard.data_browser caches `draw` per slice
(holding the model lock) and reads `stored`; the pipeline's "precompute" stage (core/after_training.py) calls
`precompute`, which draws the slices the page shows before any filter is touched (the first pages of each
source) into the run's feature cache. The entry is keyed by what the pictures are made from: the data root, the
segmenter's checkpoint, the run's pipeline settings and VERSION; a retrained segmenter makes a new one.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from core.config import PipelineConfig
from core.data.imaging import read_mask
from core.feature_keys import data_pictures
from core.inputs.fields import FieldFinder, needs_segmenter
from core.inputs.frames import CLASSICAL
from core.knowledge import slice_facts
from core.knowledge.signs import LESION_P, on_grid
from core.models.network import SEGMENTER
from core.pictures import images as im
from core.runs import feature_cache as fc
from core.runs.runfolder import RunFolder

PER_PAGE = 12  # slices on one page of the Data page
EXPERT_COLOUR = (255, 215, 0)  # the expert's infection mask, outlined
VERSION = 2  # of draw's pictures: a change of them must bump this, so the stored ones are redrawn
NAME = "data-page"  # the feature-cache entry


@dataclass(frozen=True)
class LesionSource:
    """The segmenter whose lesions the Data page shows now: the segmenter stage's model once the stage has
    ended, or, while it trains, the model after its last finished round (preliminary: shown minutes earlier,
    said so, and replaced when the stage ends)."""
    path: Path
    final: bool
    rounds_done: int | None  # preliminary: the rounds finished (0: round 0, the labelled slices alone)
    stamp: str  # changes whenever the model does: part of every cache key of its pictures


def lesion_source(run: RunFolder) -> LesionSource | None:
    """The run's LesionSource; None before round 0 of its segmenter has ended."""
    from core.training.segmentation import LATEST, finished_rounds

    folder = run.stage(SEGMENTER)
    best, latest = folder / "best.pt", folder / LATEST
    if best.exists():
        return LesionSource(best, True, None, f"final:{best.stat().st_mtime_ns}")
    rounds = finished_rounds(folder)
    try:
        mtime = latest.stat().st_mtime_ns
    except OSError:
        return None
    return None if rounds is None else LesionSource(latest, False, rounds, f"round {rounds}:{mtime}")


def pipeline_config(run: RunFolder) -> PipelineConfig | None:
    pipe = run.config.get("pipeline")
    return None if pipe is None else PipelineConfig.from_saved(pipe)


def fields(run: RunFolder, segmenter_done: bool) -> FieldFinder:
    """The run's lung fields; before its segmenter exists, the classical ones (what input lungs+lesions adds to)."""
    cfg = pipeline_config(run)
    if cfg is None or (needs_segmenter(cfg.input) and not segmenter_done):
        return CLASSICAL
    return FieldFinder.of_run(run, cfg)


def draw(path: str, mask: str, fields: FieldFinder, segmenter=None, seg=None) -> dict:
    """PNG bytes of one slice: card (lung field outlined, lesions over it with a segmenter), slice, field,
    lesion (or None: the lesions inside the lung field, where the signs count them), expert (the expert's mask
    outlined, or None); signs (or None); found (a lung field), lesion_found (a pixel of the field the segmenter calls
    lesion). `segmenter`, `seg`: the run's model and SegConfig."""
    fr = slice_facts.frame(path, fields=fields)
    out = {"slice": im.to_png(im.grey_rgb(fr.image)), "field": im.to_png(im.outline(fr.image, fr.lung)),
           "lesion": None, "lesion_found": False, "expert": None, "signs": None, "found": fr.found,
           "lungs_with_lesions": fields is not CLASSICAL and fields.segmenter is not None}
    card = fr.image
    if segmenter is not None:
        lesion = slice_facts.lesion_map(segmenter, seg, path)
        # drawn where the signs count it: the segmenter sees the whole slice and fires on the heart or the chest
        # wall of some slices, which no sign counts and no reader should take for a lesion
        counted = lesion * (on_grid(fr.lung, lesion.shape[-1]) > 0.5)
        card = im.lesion_overlay(fr.image, counted)
        out["lesion"], out["lesion_found"] = im.to_png(card), bool((counted > LESION_P).any())
        out["signs"] = slice_facts.signs(fr, lesion).to_dict()
    out["card"] = im.to_png(im.outline(card, fr.lung))
    if mask:
        gt = np.asarray(Image.fromarray((read_mask(mask) > 0).astype(np.uint8) * 255).resize(fr.image.shape[::-1]))
        out["expert"] = im.to_png(im.outline(fr.image, gt > 127, EXPERT_COLOUR))
    return out


def stored(run: RunFolder, data_root: str) -> dict[str, dict]:
    """slice path -> its drawn pictures (draw's dict), of the slices `precompute` drew for this segmenter and
    these settings; {} when none were drawn (no segmenter yet, or a run the stage has not reached)."""
    if not (run.stage(SEGMENTER) / "best.pt").exists():
        return {}
    hit = fc.load_cached(run.features_dir, NAME, data_pictures(run, data_root, VERSION))
    return {} if hit is None else dict(zip(hit["paths"], hit["views"]))


def first_pages(data_root: str, pages: int) -> list[tuple[str, str]]:
    """(path, mask) of the slices on the Data page's first `pages` pages of each source, unfiltered."""
    from core.data.catalogue import catalogue

    cat, _ = catalogue(data_root)
    rows = cat.groupby("source", sort=False).head(pages * PER_PAGE)
    return list(zip(rows.path, rows["mask"]))


def precompute(run: RunFolder, pages: int) -> int:
    """Draw the first `pages` pages of each source of the run's data root into its feature cache (those
    already drawn are kept); the slices drawn."""
    from core.training.segmentation import load_segmenter

    data_root = run.config.get("data_root")
    if not data_root or not (run.stage(SEGMENTER) / "best.pt").exists():
        raise FileNotFoundError(f"{run.path}: no data root or no trained segmenter ({SEGMENTER}/best.pt)")
    have = stored(run, data_root)
    todo = [(p, m) for p, m in first_pages(data_root, pages) if p not in have]
    if todo:
        finder, cfg = fields(run, True), pipeline_config(run)
        model = load_segmenter(run.stage(SEGMENTER) / "best.pt")
        have.update({p: draw(p, m, finder, model, cfg.seg) for p, m in todo})
        fc.save_cached(run.features_dir, NAME, data_pictures(run, data_root, VERSION),
                       {"paths": list(have), "views": list(have.values())})
    return len(todo)
