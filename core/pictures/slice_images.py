"""The pictures the pages show of one slice, composed from core.pictures.images: the stored maps of a run's
slice, the 3D map's hover cards, the tau panel, and the maps of a live (uploaded) analysis.

Pure drawing: inputs are a RunView or a SliceAnalysis and arrays, outputs PNG bytes or data URIs.
No Streamlit and no model calls here (dashboard.data caches these and holds the model lock).
"""
from __future__ import annotations

import numpy as np

from core.explain.attention import threshold_box
from core.pictures import images as im
from core.runs.run_view import RunView

THUMB = 80  # hover-card thumbnails (px)
CROP = 160  # lung and heatmap crops (px)
HOVER_VERSION = 1  # of hover_card's drawing: a change of it must bump this, so the cached cards are redrawn


def hover_card(img: np.ndarray, cam: np.ndarray, lesion_prob: np.ndarray, lesion_boxes, size: int | None = None
               ) -> list[str]:
    """[slice, fusion CAM overlay, infected-region overlay] as small JPEG data URIs."""
    boxes = [(b, im.BOX_COLOURS["lesion"], 1) for b in lesion_boxes]
    return [im.data_uri(im.grey_rgb(img, size), "JPEG", 80),
            im.data_uri(im.cam_overlay(img, cam, size=size), "JPEG", 80),
            im.data_uri(im.lesion_overlay(img, lesion_prob, size=size, boxes=boxes), "JPEG", 80)]


def hover_cards(rv: RunView, size: int = THUMB) -> dict[str, list[str]]:
    """key -> hover_card of every slice of the run's feature caches, drawn once and kept in its feature cache
    (the pipeline's "precompute" stage draws them, so the Map page's first visit only reads them)."""
    def draw() -> dict:
        keys = rv.feature_keys
        return {"keys": keys, "cards": [hover_card(rv.image(k, size), rv.fusion_cam(k), rv.lesion_prob(k),
                                                   rv.lesion_boxes(k)) for k in keys]}

    out = rv.derived("hover-cards", {"size": size, "version": HOVER_VERSION}, draw)
    return dict(zip(out["keys"], out["cards"]))


def _side_crops(hires: np.ndarray, side_boxes: dict) -> dict[str, bytes]:
    return {s: im.to_png(im.crop_image(hires, b, CROP) if b is not None else im.blank(CROP, "no lesion on this side"))
            for s, b in side_boxes.items()}


def stored_images(rv: RunView, key: str, size: int = 224) -> dict[str, bytes]:
    """PNG bytes of the stored maps of one slice of the run (at the run's tau): slice, lesion, fusion_cam,
    attention, right_lung, left_lung, and lung_field when the run's input uses one."""
    img = rv.image(key, size)
    sides = rv.side_boxes(key)
    lesion_boxes = [(b, im.BOX_COLOURS["lesion"]) for b in rv.lesion_boxes(key)]
    side_boxes = [(b, im.BOX_COLOURS[s]) for s, b in sides.items() if b is not None]
    out = {
        "slice": im.to_png(im.grey_rgb(img)),
        "lesion": im.to_png(im.lesion_overlay(img, rv.lesion_prob(key), boxes=lesion_boxes + side_boxes)),
        "fusion_cam": im.to_png(im.cam_overlay(img, rv.fusion_cam(key))),
        "attention": im.to_png(im.cam_overlay(img, rv.attention_map(key, size),
                                              boxes=[(rv.heatmap_box(key), im.BOX_COLOURS["heatmap"])])),
        **_side_crops(img, sides),
    }
    lung = rv.lung_field(key, size)
    if lung is not None:
        out["lung_field"] = im.to_png(im.outline(img, lung))
    return out


def tau_images(a, tau: float, size: int = 224) -> dict[str, bytes]:
    """The attention map of a SliceAnalysis with its Eq. 2 box at `tau`, the region, and the crop the heatmap
    branch sees."""
    hc = threshold_box(a.attention, tau)
    img = im.as_uint8(a.image)
    box = [(hc.box, im.BOX_COLOURS["heatmap"])]
    attention = im.cam_overlay(img, a.attention, size=size, boxes=box)
    region = im.overlay(img, hc.region.astype(np.float32), "region", alpha=0.55, threshold=0.5, size=size, boxes=box)
    return {"attention": im.to_png(attention), "region": im.to_png(region),
            "crop": im.to_png(im.crop_image(a.hires, hc.box, CROP))}


def analysis_images(a, cam: np.ndarray, size: int = 224) -> dict[str, bytes | list[str]]:
    """Slice, lesion overlay, lung crops and fusion CAM (`cam`) of a live SliceAnalysis, and its hover card
    (`thumbs`) for the 3D map."""
    img = im.as_uint8(a.image)
    boxes = [(b, im.BOX_COLOURS["lesion"]) for b in a.lesion_boxes]
    boxes += [(b, im.BOX_COLOURS[s]) for s, b in a.side_boxes.items() if b is not None]
    return {"slice": im.to_png(im.grey_rgb(img, size)),
            "lesion": im.to_png(im.lesion_overlay(img, a.lesion_prob, size=size, boxes=boxes)),
            "fusion_cam": im.to_png(im.cam_overlay(img, cam, size=size)),
            **_side_crops(a.hires, a.side_boxes),
            "thumbs": hover_card(img, cam, a.lesion_prob, a.lesion_boxes, size=THUMB)}
