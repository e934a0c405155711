"""Overlay helpers for the dashboard: grey slice + colour-mapped map + box outlines -> PNG/JPEG.

numpy + PIL only. Every function takes a grey slice as (H, W) uint8 or float in [0, 1] and maps
in [0, 1] of any size (they are resized to the slice); boxes are core.explain.attention.Box objects in
[0, 1] slice coordinates, so they land in the right place at any output size.
"""
from __future__ import annotations

import base64
import io
from typing import Iterable

import numpy as np
from PIL import Image, ImageDraw

# Anchor colours of the colour maps (value in [0, 1] -> RGB), linearly interpolated.
_CMAPS = {
    # blue -> cyan -> yellow -> red: the usual CAM "jet"-like look, without jet's dark ends
    "cam": [(0.0, (20, 30, 140)), (0.25, (30, 120, 230)), (0.5, (60, 220, 200)), (0.75, (250, 220, 40)),
            (1.0, (220, 30, 20))],
    # dark red -> bright red -> yellow: lesion probability
    "lesion": [(0.0, (120, 0, 0)), (0.6, (255, 40, 30)), (1.0, (255, 235, 60))],
    # the binary tau region
    "region": [(0.0, (0, 200, 255)), (1.0, (0, 200, 255))],
}

BOX_COLOURS = {
    "heatmap": (255, 255, 0),  # the tau crop box
    "lesion": (255, 80, 80),
    "right_lung": (80, 200, 255),
    "left_lung": (120, 255, 120),
}


def as_uint8(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype == np.uint8:
        return a
    return (np.clip(a.astype(np.float32), 0.0, 1.0) * 255).round().astype(np.uint8)


def colormap(values: np.ndarray, name: str = "cam") -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) uint8."""
    anchors = _CMAPS[name]
    xs = np.array([a[0] for a in anchors], np.float32)
    cs = np.array([a[1] for a in anchors], np.float32)
    v = np.clip(np.nan_to_num(np.asarray(values, np.float32)), 0.0, 1.0)
    out = np.stack([np.interp(v, xs, cs[:, c]) for c in range(3)], axis=-1)
    return out.round().astype(np.uint8)


def _resize_map(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A float map resized (bilinear) to (H, W)."""
    m = np.asarray(m, np.float32)
    if m.shape == size:
        return m
    im = Image.fromarray(m, mode="F").resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(im, np.float32)


def grey_rgb(img: np.ndarray, size: int | None = None) -> np.ndarray:
    """(H, W) slice -> (S, S, 3) uint8 RGB, resized to `size` when given."""
    g = Image.fromarray(as_uint8(img), mode="L")
    if size is not None and g.size != (size, size):
        g = g.resize((size, size), Image.BILINEAR)
    return np.asarray(g.convert("RGB"))


def overlay(img: np.ndarray, heat: np.ndarray | None = None, cmap: str = "cam", alpha: float = 0.45,
            weight_by_value: bool = False, threshold: float | None = None, size: int | None = None,
            boxes: Iterable[tuple] = (), min_alpha: float = 0.0) -> Image.Image:
    """Grey slice with a colour-mapped map blended on top and box outlines.

    heat: (h, w) in [0, 1] (resized to the slice). weight_by_value: the blend weight grows with the
    value from min_alpha to alpha (low values leave the slice visible). threshold: pixels below it
    are not coloured. boxes: (Box, (r, g, b)) pairs, or (Box, (r, g, b), width)."""
    base = grey_rgb(img, size).astype(np.float32)
    h, w = base.shape[:2]
    if heat is not None:
        m = np.clip(_resize_map(heat, (h, w)), 0.0, 1.0)
        colour = colormap(m, cmap).astype(np.float32)
        a = np.full((h, w), alpha, np.float32)
        if weight_by_value:
            a = min_alpha + (alpha - min_alpha) * m
        if threshold is not None:
            a = np.where(m >= threshold, a, 0.0)
        base = base * (1 - a[..., None]) + colour * a[..., None]
    out = Image.fromarray(base.round().clip(0, 255).astype(np.uint8), mode="RGB")
    draw_boxes(out, boxes)
    return out


def cam_overlay(img: np.ndarray, cam: np.ndarray, size: int | None = None, boxes: Iterable[tuple] = ()) -> Image.Image:
    """A class activation map: colour everywhere, stronger where the map is high."""
    return overlay(img, cam, "cam", alpha=0.6, weight_by_value=True, min_alpha=0.2, size=size, boxes=boxes)


def lesion_overlay(img: np.ndarray, prob: np.ndarray, size: int | None = None, boxes: Iterable[tuple] = (),
                   threshold: float = 0.5) -> Image.Image:
    """The infected-region mask (lesion probability above `threshold`, as core.inputs.lesion_crops cuts it),
    coloured by probability."""
    return overlay(img, prob, "lesion", alpha=0.8, weight_by_value=True, min_alpha=0.45, threshold=threshold,
                   size=size, boxes=boxes)


LUNG_COLOUR = (0, 220, 255)


def outline(img: np.ndarray | Image.Image, mask: np.ndarray, colour=LUNG_COLOUR) -> Image.Image:
    """Grey slice (or an RGB picture of it) with the border of a binary mask (the lung field) drawn over it,
    two pixels wide."""
    from scipy.ndimage import binary_erosion

    base = np.asarray(img.convert("RGB")) if isinstance(img, Image.Image) else grey_rgb(img)
    m = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(base.shape[1::-1], Image.NEAREST)) > 127
    edge = m & ~binary_erosion(m, iterations=2)
    base = base.copy()
    base[edge] = colour
    return Image.fromarray(base, mode="RGB")


def draw_boxes(im: Image.Image, boxes: Iterable[tuple]) -> Image.Image:
    w, h = im.size
    draw = ImageDraw.Draw(im)
    default_width = max(1, round(min(w, h) / 110))
    for item in boxes:
        box, colour = item[0], item[1]
        width = item[2] if len(item) > 2 else default_width
        if box is None:
            continue
        y0, x0, y1, x1 = box.pixels(h, w)
        draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=tuple(colour), width=width)
    return im


def crop_image(img: np.ndarray, box, size: int = 160) -> Image.Image:
    """The part of a slice inside `box`, resized to (size, size) (what a branch sees)."""
    a = as_uint8(img)
    h, w = a.shape[:2]
    y0, x0, y1, x1 = box.pixels(h, w)
    return Image.fromarray(a[y0:y1, x0:x1]).resize((size, size), Image.BILINEAR).convert("RGB")


def blank(size: int = 160, text: str = "") -> Image.Image:
    im = Image.new("RGB", (size, size), (38, 39, 48))
    if text:
        ImageDraw.Draw(im).text((8, size // 2 - 6), text, fill=(200, 200, 200))
    return im


PNG_LEVEL = 3  # zlib level of the PNGs the pages show: a 256 px slice in 5 ms (the pages draw dozens)


def to_bytes(im: Image.Image | np.ndarray, fmt: str = "PNG", quality: int = 85) -> bytes:
    if isinstance(im, np.ndarray):
        im = Image.fromarray(as_uint8(im))
    buf = io.BytesIO()
    if fmt.upper() in ("JPEG", "JPG"):
        im.convert("RGB").save(buf, format="JPEG", quality=quality, optimize=True)
    else:  # not optimize=True: it tries every filter at level 9, 18x the time of level 3 for a file 8% smaller
        im.save(buf, format="PNG", compress_level=PNG_LEVEL)
    return buf.getvalue()


def to_png(im: Image.Image | np.ndarray) -> bytes:
    return to_bytes(im, "PNG")


def data_uri(im: Image.Image | np.ndarray, fmt: str = "PNG", quality: int = 85) -> str:
    mime = "image/jpeg" if fmt.upper() in ("JPEG", "JPG") else "image/png"
    return f"data:{mime};base64," + base64.b64encode(to_bytes(im, fmt, quality)).decode("ascii")
