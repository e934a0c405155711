"""Classical lung-field segmentation: where the lungs are on a CT slice, without weights.

`lung_field(img01)` takes a (H, W) image in [0, 1] and returns a `LungField`: a boolean mask of the
lungs (vessels, nodules and most lesions included) or, where no plausible lung field is found, an
all-True mask with `found=False` and a one-line reason. Callers report those slices.

The slices are of every kind: full scans with body outline, CT table and field-of-view circle, lung
or soft-tissue windows, figures cut from papers (zoomed, cropped through the body, framed, with
arrows and letters), tight crops where the lungs touch the image border. The method, on a copy whose
longest side is WORK_SIDE pixels (numpy + scipy.ndimage only):

1. stretch contrast (1st-99th percentile), smooth lightly;
2. outside air: the darkest grey class, where it reaches the image border and is not walled in by
   the body (rays in 3 of 4 directions meet solid); frames, rulers and letters are no wall;
3. lung candidates: the dark class inside the body, kept when thick, compact, walled in by tissue
   and not running along the outside air (this drops the trachea, bowel gas, the gap above the CT
   table, the air inside a scanner's field-of-view circle); at the lung bases, pure-air pieces wholly in
   front of the lungs are the colon and stomach under the diaphragm, not lung;
4. grow into ground glass, fill small holes, and close the bites of pleural consolidations with
   each lung's convex hull, limited to beyond the lungs' inner edge (the heart stays out);
5. an inverted figure (bright surround, no vessel-dotted lungs) is read inverted when that finds
   clearly more vessel-dotted lungs.

Measured on the real data (train/lungs.py, tests/test_lungs.py): on the 98 labelled COVID-SemiSeg
slices the mask holds ~93% of the lesion pixels at ~57% mean coverage (those slices are cropped to
the chest: a reference field drawn with their ground truth, aerated lung plus lesions, covers ~54%;
`train lungs` prints both); dense consolidations that fill a lung out to the chest wall are what it
misses. `with_lesions` adds a segmenter's lesion pieces that touch the field (`train lungs --run` measures it).
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

LUNG_VERSION = "2"  # bump whenever the algorithm changes: it is part of cache keys elsewhere

WORK_SIDE = 256  # longest side of the working copy; sizes below are working pixels or shares of the slice
# Outside air vs body
AIR_OPEN = 3  # opening that cuts air leaking into a lung through a gap in a thin chest wall
BORDER_ZONE = 8  # air this close to the image border touches it (a figure's frame may run between)
SOLID_OPEN = 2  # opening that strips thin lines (rulers, frames, table rails) off the walls
FRAME_MARGIN = 4  # solid this close to the image border walls nothing in (frames, page margins)
# Which dark regions are lungs
MIN_SIZE = 0.005  # smaller dark regions are speckle, letters' counters, bowel gas
MIN_RADIUS = 0.02  # a lung's largest inscribed radius is at least this share of WORK_SIDE
MIN_SOLIDITY = 0.35  # a lung (or a joined pair) fills at least this share of its convex hull
REL_SIZE = 0.05  # pieces smaller than this share of the largest lung are dropped
AIR_GAP = 0.08  # a small piece this much darker than the main lung is pure air: airway, stomach, bowel
GAS_LEVEL = 0.04  # a piece whose darkest tenth lies this close to the outside air's grey holds pure air: bowel gas
OUTSIDE_MIN = 0.05  # the outside air's grey is read only when it covers at least this share of the slice
MIN_COVER = 0.02  # less lung than this share of the slice: not found
MAX_COVER = 0.95  # more than this: no body around the dark region, not found
# Growing the lungs over their lesions
GROW = 0.8  # ground-glass threshold: this far from the lungs' median grey towards the wall's
GROW_RAW = 0.9  # ... and no pixel of the path brighter than this (a wall is a barrier even when thin)
GROW_SKIN = 10  # ... nor closer to the outside air than this (subcutaneous fat)
GROW_SIGMA = 2.0  # smoothing for the ground-glass test (mottled lesions average to grey)
GROW_STEPS = 40  # how deep the lungs may grow into ground glass
HOLE_SHARE = 0.04  # holes smaller than this share of the slice are filled (vessels, nodules, lesions)
HULL_DEPTH = 12  # the convex hull may add at most this far from the grown lungs
# Lesions added to the field (with_lesions)
TOUCH = 0.004  # a lesion piece this close to the field (share of the slice's longest side) touches it
# Inverted figures
VESSEL_MIN = 0.01  # below this vessel score (white top-hat in the lungs) an inverted reading is tried
VESSEL_RATIO = 1.5  # ... and taken when its lungs score this many times higher
# Answers kept in memory, keyed by the image's bytes (a packed mask: 8 KB at 256 px)
MEMO_SLICES = 512

@dataclass(frozen=True)
class LungField:
    mask: np.ndarray  # (H, W) bool, same shape as the input image
    found: bool  # False when no plausible lung field was found
    reason: str  # "" when found; otherwise one line saying why

    def box(self, margin: float = 0.05) -> tuple[float, float, float, float]:
        """(y0, x0, y1, x1) as fractions of height/width: the mask's bounding box grown by `margin`
        (fraction of the box side) on every side and clipped to [0, 1]; (0, 0, 1, 1) when not found."""
        if not self.found or not self.mask.any():
            return (0.0, 0.0, 1.0, 1.0)
        h, w = self.mask.shape
        rows = np.flatnonzero(self.mask.any(axis=1))
        cols = np.flatnonzero(self.mask.any(axis=0))
        y0, y1 = rows[0] / h, (rows[-1] + 1) / h
        x0, x1 = cols[0] / w, (cols[-1] + 1) / w
        dy, dx = (y1 - y0) * margin, (x1 - x0) * margin
        return (max(0.0, y0 - dy), max(0.0, x0 - dx), min(1.0, y1 + dy), min(1.0, x1 + dx))

    @property
    def coverage(self) -> float:
        return float(self.mask.mean())


# ----------------------------------------------------------------------------------------------
# helpers


def otsu(values: np.ndarray, bins: int = 128) -> float:
    """Otsu's threshold of values in [0, 1]."""
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    hist = hist.astype(np.float64)
    total = hist.sum()
    if total == 0:
        return 0.5
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = total - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1e-12)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1e-12)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(edges[int(np.argmax(between[:-1])) + 1])


def _otsu3(values: np.ndarray, bins: int = 64) -> tuple[float, float, np.ndarray]:
    """Two thresholds splitting values in [0, 1] into three classes (exhaustive multi-Otsu);
    also (2, 3): the class means and the class weights."""
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    p = hist.astype(np.float64) / max(1, hist.sum())
    c = (edges[:-1] + edges[1:]) / 2
    w = np.concatenate([[0], np.cumsum(p)])
    m = np.concatenate([[0], np.cumsum(p * c)])
    i, j = np.triu_indices(bins + 1, k=1)
    ok = (i >= 1) & (j <= bins - 1)
    i, j = i[ok], j[ok]
    w0, w1, w2 = w[i], w[j] - w[i], 1 - w[j]
    m0, m1, m2 = m[i], m[j] - m[i], m[-1] - m[j]
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(w0 > 0, m0 ** 2 / w0, 0) + np.where(w1 > 0, m1 ** 2 / w1, 0) + np.where(w2 > 0, m2 ** 2 / w2, 0)
    k = int(np.argmax(score))
    a, b = i[k], j[k]
    means = np.array([m0[k] / max(w0[k], 1e-12), m1[k] / max(w1[k], 1e-12), m2[k] / max(w2[k], 1e-12)])
    return float(edges[a]), float(edges[b]), np.stack([means, [w0[k], w1[k], w2[k]]])


def _resize(img: np.ndarray, shape: tuple[int, int], order: int = 1) -> np.ndarray:
    """Resize to exactly `shape` (scipy only)."""
    h, w = img.shape
    zy, zx = shape[0] / h, shape[1] / w
    if order > 0 and (zy < 1 or zx < 1):
        # Anti-alias before shrinking: text strokes and noise would alias into speckle.
        img = ndimage.gaussian_filter(img, (max(0.0, 0.4 / zy), max(0.0, 0.4 / zx)))
    out = ndimage.zoom(img, (zy, zx), order=order, prefilter=False, grid_mode=True, mode="nearest")
    if out.shape != tuple(shape):  # zoom can be off by one pixel
        fixed = np.zeros(shape, out.dtype)
        hh, ww = min(shape[0], out.shape[0]), min(shape[1], out.shape[1])
        fixed[:hh, :ww] = out[:hh, :ww]
        fixed[hh:, :] = fixed[hh - 1:hh, :]
        fixed[:, ww:] = fixed[:, ww - 1:ww]
        out = fixed
    return out


def _hits(solid: np.ndarray) -> np.ndarray:
    """For every pixel, in how many of the 4 axis directions a ray meets `solid` (0..4).

    Lungs are walled in by the chest wall, the mediastinum and the spine on all sides; the air outside
    the body sees the image border in most directions. A crop that cuts the chest wall loses one or
    two directions, never most of them.
    """
    s = solid.astype(np.uint8)
    left = np.maximum.accumulate(s, axis=1)
    right = np.maximum.accumulate(s[:, ::-1], axis=1)[:, ::-1]
    up = np.maximum.accumulate(s, axis=0)
    down = np.maximum.accumulate(s[::-1], axis=0)[::-1]
    return left + right + up + down


def _convex_hull_mask(mask: np.ndarray) -> np.ndarray:
    """Filled convex hull of a boolean mask (Andrew's monotone chain over each row's end pixels)."""
    out = mask.copy()
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return out
    sub = mask[rows]
    first = np.argmax(sub, axis=1)
    last = mask.shape[1] - 1 - np.argmax(sub[:, ::-1], axis=1)
    # The hull of a shape is the hull of each row's leftmost and rightmost pixel.
    pts = sorted(set(zip(np.concatenate([first, last]).tolist(), np.concatenate([rows, rows]).tolist())))
    if len(pts) < 3:
        return out

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    hull = np.array(lower[:-1] + upper[:-1], dtype=np.float64)  # (x, y), counter-clockwise
    if len(hull) < 3:
        return out
    # Row by row, the hull spans [min x, max x] of its edges' crossings with that row.
    y0, y1 = int(rows[0]), int(rows[-1])
    left = np.full(y1 - y0 + 1, np.inf)
    right = np.full(y1 - y0 + 1, -np.inf)
    a, b = hull, np.roll(hull, -1, axis=0)
    for (ax, ay), (bx, by) in zip(a, b):
        lo, hi = int(np.ceil(min(ay, by))), int(np.floor(max(ay, by)))
        ys = np.arange(lo, hi + 1)
        xs = np.full(len(ys), ax) if ay == by else ax + (ys - ay) * (bx - ax) / (by - ay)
        if ay == by:
            xs = np.concatenate([xs, [bx]])
            ys = np.concatenate([ys, ys[:1]])
        np.minimum.at(left, ys - y0, xs)
        np.maximum.at(right, ys - y0, xs)
    cols = np.arange(mask.shape[1])
    span = (cols[None, :] >= np.ceil(left - 0.5)[:, None]) & (cols[None, :] <= np.floor(right + 0.5)[:, None])
    out[y0:y1 + 1] |= span
    return out


def _outer_band(lungs: np.ndarray, info: dict, n_angles: int = 360) -> np.ndarray:
    """Pixels that lie, seen from the middle of the lung field, at or beyond the lungs' inner edge.

    From a centre between the lungs (in the mediastinum) every ray meets a lung at r_in; the heart,
    great vessels and spine lie at radii below r_in, the lungs and anything along the chest wall
    beyond it. Rays that meet no lung (spine, anterior junction) are out.
    """
    h, w = lungs.shape
    ys, xs = np.nonzero(lungs)
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    rmax = int(np.ceil(np.hypot(max(cy, h - cy), max(cx, w - cx)))) + 1
    theta = np.arange(n_angles) * (2 * np.pi / n_angles)
    r = np.arange(rmax, dtype=np.float32)
    py = cy + r[None, :] * np.sin(theta)[:, None]
    px = cx + r[None, :] * np.cos(theta)[:, None]
    polar = ndimage.map_coordinates(lungs.astype(np.uint8), [py, px], order=0, mode="constant", cval=0) > 0
    valid = polar.any(axis=1)
    # Start of the outermost run along each ray: a lung that wraps round the heart is met twice.
    starts = polar & ~np.concatenate([np.zeros((n_angles, 1), bool), polar[:, :-1]], axis=1)
    r_in = np.where(starts, np.arange(rmax), -1).max(axis=1).astype(np.float32)
    info["polar"] = (cy, cx, r_in, valid)
    yy, xx = np.mgrid[0:h, 0:w]
    rr = np.hypot(yy - cy, xx - cx)
    ti = np.round(np.arctan2(yy - cy, xx - cx) / (2 * np.pi) * n_angles).astype(int) % n_angles
    return valid[ti] & (rr >= r_in[ti] - 0.5)


def _fill_small_holes(mask: np.ndarray, max_share: float) -> np.ndarray:
    """Fill holes smaller than max_share of the slice: vessels, nodules, consolidations inside a lung,
    but not the mediastinum where the two lungs meet in front of and behind it."""
    holes = ndimage.binary_fill_holes(mask) & ~mask
    lab, n = ndimage.label(holes)
    if n == 0:
        return mask
    sizes = ndimage.sum_labels(np.ones(mask.shape), lab, np.arange(1, n + 1))
    keep = np.zeros(n + 1, bool)
    keep[1:] = sizes < max_share * mask.size
    return mask | keep[lab]


def _vessel_score(g: np.ndarray, info: dict) -> float:
    """Mean white top-hat inside the lung core: vessels are small bright dots in a dark lung, which
    soft tissue mistaken for lung (an inverted figure) lacks."""
    core = info.get("core")
    if core is None:
        return 0.0
    inner = ndimage.binary_erosion(core, iterations=3)
    if inner.sum() < 10:
        return 0.0
    return float(ndimage.white_tophat(g, size=5)[inner].mean())


def _not_found(shape, reason: str) -> LungField:
    return LungField(np.ones(shape, bool), False, reason)


def drop_small(mask: np.ndarray, min_size: float) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = ndimage.sum_labels(np.ones(mask.shape), lab, np.arange(1, n + 1))
    keep = np.zeros(n + 1, bool)
    keep[1:] = sizes >= min_size
    return keep[lab]


def _clear_frame(solid: np.ndarray, depth: float = 0.08) -> None:
    """Clear, in place, rows and columns next to the image border that are solid almost end to end:
    a figure's frame or a white page margin, which would otherwise wall in the outside air."""
    for arr in (solid, solid.T):
        n = len(arr)
        for rows in (range(int(depth * n)), range(n - 1, n - 1 - int(depth * n), -1)):
            for r in rows:
                if arr[r].mean() < 0.9:
                    break
                arr[r] = False


def _drop_thin(mask: np.ndarray, iterations: int) -> np.ndarray:
    """Drop components that vanish under `iterations` erosions (lines, frames, rails)."""
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    keep = np.zeros(n + 1, bool)
    keep[np.unique(lab[ndimage.binary_erosion(mask, iterations=iterations)])] = True
    keep[0] = False
    return keep[lab]


def _gas_pieces(g: np.ndarray, lab: np.ndarray, ok: np.ndarray, body: np.ndarray) -> np.ndarray:
    """Which candidate pieces (`ok`, one per label of `lab`) are bowel or stomach gas rather than lung.

    At the lung bases the colon and stomach gas under the diaphragm can be as large as the lungs there, too large
    for the small-piece rule. Gas holds pure air, so its darkest tenth lies at the outside air's grey, while aerated
    lung's lies clearly above it (on COVID-CT-MD's normal bases, stretched grey: gas within 0.03 of the air, lung 0.08
    to 0.15 above); and gas rises to the front of a supine patient, while the lungs there are the recesses at the
    back. A piece is gas only when it also lies wholly in front of every piece that is clearly lung. Figures whose
    lungs are windowed as black as air keep them all (no piece is clearly lung, or the black lung reaches behind the
    top of the grey one), and without outside air to compare with (a crop inside the body) nothing is dropped.
    """
    gas = np.zeros(len(ok), bool)
    if (~body).mean() < OUTSIDE_MIN:
        return gas
    air = float(np.median(g[~body]))
    low = np.full(len(ok), np.nan)
    for i in np.flatnonzero(ok):
        low[i] = np.percentile(g[lab == i + 1], 10)
    lung = ok & (low >= air + 2 * GAS_LEVEL)
    if not lung.any():
        return gas
    rows = [box[0] for box in ndimage.find_objects(lab, max_label=len(ok))]  # each piece's rows, top to bottom
    top = min(rows[i].start for i in np.flatnonzero(lung))
    for i in np.flatnonzero(ok & (low < air + GAS_LEVEL)):
        gas[i] = rows[i].stop - 1 < top
    return gas


def _segment(g: np.ndarray) -> tuple[np.ndarray | None, str, dict]:
    """Lung mask on the (contrast-stretched, smoothed) working copy, or (None, reason)."""
    area = g.size
    info: dict = {}
    # Body vs outside air. Air is the darkest of three grey classes (in a lung window the outside
    # air only; in a soft-tissue window the lungs too; in a crop without outside air the lungs).
    # An air region touching the image border is outside air unless the body walls it in: rays from
    # most of its pixels meet solid in at least 3 of 4 directions (a lung cut by the crop border).
    ta, _, _ = _otsu3(g)
    air = g <= ta
    # Thin lines (figure frames, rulers, table rails) and small marks (letters, arrows) are no wall.
    solid = _drop_thin(drop_small(ndimage.binary_opening(~air, iterations=SOLID_OPEN), 0.005 * area), 2)
    _clear_frame(solid)
    m = FRAME_MARGIN
    solid[:m] = solid[-m:] = False  # a figure's frame runs along the image border
    solid[:, :m] = solid[:, -m:] = False
    enclosed = _hits(solid) >= 3
    # Components of the air after an opening: a lung seen through a gap in a thin chest wall must
    # not merge with the outside air.
    lab, n = ndimage.label(ndimage.binary_opening(air, iterations=AIR_OPEN))
    # "Touching the border" means within a margin: a figure's frame may run between.
    e = BORDER_ZONE
    border = np.unique(np.concatenate([lab[:e].ravel(), lab[-e:].ravel(), lab[:, :e].ravel(), lab[:, -e:].ravel()]))
    border = border[border > 0]
    outside = np.zeros(n + 1, bool)
    if len(border):
        share = ndimage.mean(enclosed, lab, border)
        outside[border[np.asarray(share) < 0.5]] = True
    # Give the outside air back what the opening took from it (thin slivers along the skin).
    body = ~ndimage.binary_dilation(outside[lab], iterations=AIR_OPEN + 1, mask=air)
    info.update(ta=ta, body=body, solid=solid, enclosed=enclosed)
    if body.mean() < 0.1:
        return None, f"no body found (outside air covers {1 - body.mean():.0%} of the slice)", info
    # Lungs: the dark class inside the body.
    t2 = otsu(g[body])
    a2, _, (m2, w2) = _otsu3(g[body])
    if m2[0] < 0.1 and m2[1] - m2[0] > 0.2 and w2[1] > w2[2]:
        # Soft-tissue window (lungs black like air, a big mid-grey class of muscle, fat and heart, a
        # small bright one of bone and contrast): keep the mid-grey fat out of the lungs.
        t2 = min(t2, a2)
        info["soft_window"] = True
    info["t2"] = t2
    dark = ndimage.binary_opening((g < t2) & body, iterations=2)  # cut thin bridges to outside air
    lab, n = ndimage.label(dark)
    if n == 0:
        return None, "no dark region inside the body", info
    idx = np.arange(1, n + 1)
    sizes = ndimage.sum_labels(np.ones(g.shape), lab, idx)
    # Thickness (largest inscribed radius) rejects the air gap between back and CT table, and the
    # trachea; size rejects bowel gas and speckle.
    radius = np.zeros(n + 1)
    np.maximum.at(radius, lab[dark], ndimage.distance_transform_edt(dark)[dark])
    thick = radius[1:]
    # Lungs are walled off from the outside air by the chest wall; a dark region that runs along the
    # outside air is skin partial volume, the CT table or air trapped by the arms.
    edge = dark & ~ndimage.binary_erosion(dark)
    near_out = ndimage.binary_dilation(~body, iterations=3)
    touch = ndimage.sum_labels(edge & near_out, lab, idx) / np.maximum(1, ndimage.sum_labels(edge, lab, idx))
    # Lungs are walled in by bright tissue (chest wall, mediastinum, spine) on at least 3 of 4 sides;
    # air between the body and a scanner's field-of-view edge or the CT table is not.
    tissue = _drop_thin(drop_small(g >= t2, 0.005 * area), 2)
    walled = ndimage.mean(_hits(tissue) >= 3, lab, idx)
    ok = (sizes >= MIN_SIZE * area) & (thick >= MIN_RADIUS * WORK_SIDE) & (touch <= 0.15) & (walled >= 0.5)
    # Where the slice shows the body whole (outside air around it) and some lung lies clear of the
    # image border, a dark region reaching the border is outside the body (a notch between the
    # breasts, the space under the CT table), not lung.
    e = BORDER_ZONE
    zone = np.zeros(g.shape, bool)
    zone[:e] = zone[-e:] = True
    zone[:, :e] = zone[:, -e:] = True
    at_border = ndimage.sum_labels(zone, lab, idx) > 0
    if (~body).mean() >= 0.05 and (ok & ~at_border & (sizes >= 0.02 * area)).any():
        ok &= ~at_border
    if not ok.any():
        return None, f"no thick dark region inside the body (largest covers {sizes.max() / area:.1%} of the slice)", info
    # A ring of air round the body (inside a scanner's field-of-view circle, or between body and a
    # figure frame) is thick and walled in, but hollow: a lung fills most of its convex hull.
    solidity = np.zeros(n)
    for i in np.flatnonzero(ok):
        solidity[i] = sizes[i] / _convex_hull_mask(lab == i + 1).sum()
    ok &= solidity >= MIN_SOLIDITY
    if not ok.any():
        return None, "no compact dark region inside the body (only rings or strips)", info
    gas = _gas_pieces(g, lab, ok, body)
    ok &= ~gas
    big = sizes[ok].max()
    ok &= sizes >= REL_SIZE * big
    # Small pieces are kept (a lung split by consolidation), unless they are pure air, darker than
    # the aerated lung: the trachea, main bronchi, bowel or stomach gas.
    ref = np.median(g[lab == np.flatnonzero(ok & (sizes == big))[0] + 1])
    for i in np.flatnonzero(ok & (sizes < 0.25 * big)):
        ok[i] = np.median(g[lab == i + 1]) >= ref - AIR_GAP
    keep = np.zeros(n + 1, bool)
    keep[1:] = ok
    core = keep[lab]
    info["core_solidity"] = float((solidity * sizes)[ok].sum() / sizes[ok].sum())
    info["core"] = core
    # Whether the slice shows lungs is judged with the gas beside them: a base slice's lungs are small.
    cover = float(core.mean() + sizes[gas].sum() / area)
    if cover < MIN_COVER:
        return None, f"dark region covers {cover:.1%} of the slice", info
    # Ground glass is brighter than aerated lung but darker than the wall: grow the lungs into
    # smoothed pixels below a higher threshold (mottled lesions average to grey; the wall does not).
    lo = float(np.median(g[core]))
    hi = float(np.median(g[body & (g >= t2)])) if (body & (g >= t2)).any() else 1.0
    t_hi = lo + GROW * (hi - lo)
    # Dark pixels that are not lung (outside air, the gap above the CT table, bowel gas) stop growth.
    # The raw grey must stay below the wall's too: a thin wall between lung and subcutaneous fat
    # blurs below t_hi but not below this.
    allowed = (ndimage.gaussian_filter(g, GROW_SIGMA) < t_hi) & (g < lo + GROW_RAW * (hi - lo)) & (g >= t2) & body
    if not body.all():
        # Subcutaneous fat is as grey as ground glass but lies near the skin; lungs lie deeper.
        allowed &= ndimage.distance_transform_edt(body) > GROW_SKIN
    if info.get("soft_window"):
        lungs = core  # ground glass is invisible in a soft-tissue window; growth would only find fat
    else:
        lungs = ndimage.binary_dilation(core, iterations=GROW_STEPS, mask=allowed | core) | core
    info.update(t_hi=t_hi, grown=lungs)
    lungs = _fill_small_holes(lungs, HOLE_SHARE)
    # Dense consolidation along the pleura is as bright as the chest wall and bites into the lung:
    # take each lung's convex hull to cover it, but only beyond the lungs' inner edge seen from the
    # mediastinum (the heart stays out) and only a little way from the lung (no bridging).
    band = _outer_band(lungs, info)
    lab, n = ndimage.label(lungs)
    out = lungs.copy()
    for i in range(1, n + 1):
        out |= _convex_hull_mask(lab == i) & band
    out &= ndimage.binary_dilation(lungs, iterations=HULL_DEPTH)
    out = _fill_small_holes(out, HOLE_SHARE)
    cover = float(out.mean())
    if cover > MAX_COVER:
        return None, f"dark region covers {cover:.0%} of the slice: no body around it", info
    return out, "", info


def lung_field(img01: np.ndarray) -> LungField:
    """(H, W) float image in [0, 1] (a CT slice in a lung window, or a figure cut from a paper) -> LungField."""
    return _remembered(img01, vessels=False)[0]


def field_and_vessels(img01: np.ndarray) -> tuple[LungField, float]:
    """lung_field, and how vessel-dotted its lungs are (the mean white top-hat in their core; 0 when not found)."""
    return _remembered(img01, vessels=True)


_memo: OrderedDict[str, tuple] = OrderedDict()  # key -> (packed mask, found, reason, vessel score or None)
_memo_lock = threading.Lock()  # the dashboard's sessions are threads


def _remembered(img01: np.ndarray, vessels: bool) -> tuple[LungField, float | None]:
    """_analyse's field (and vessel score), remembered for the last MEMO_SLICES images: the search takes about 60 ms
    a slice, and the same slice is read again by a page's rerun, the tau slider, and each audit after a run. Each
    answer is a new LungField the caller may change."""
    img = np.ascontiguousarray(img01, dtype=np.float32)
    key = hashlib.blake2b(img.tobytes(), digest_size=16).hexdigest() + str(img.shape)
    with _memo_lock:
        hit = _memo.get(key)
        if hit is not None and (hit[3] is not None or not vessels):
            _memo.move_to_end(key)
            packed, found, reason, score = hit
            mask = np.unpackbits(packed, count=img.size).reshape(img.shape).astype(bool)
            return LungField(mask, found, reason), score
    field, info = _analyse(img)
    score = (_vessel_score(info["work"], info) if field.found else 0.0) if vessels else None
    with _memo_lock:
        _memo[key] = (np.packbits(field.mask), field.found, field.reason, score)
        _memo.move_to_end(key)
        while len(_memo) > MEMO_SLICES:
            _memo.popitem(last=False)
    return field, score


def with_lesions(field: LungField, lesions: np.ndarray) -> LungField:
    """The field with the pieces of a lesion mask (a segmenter's, same shape) that touch it added: dense
    consolidations as bright as the chest wall, which the classical field leaves out. Pieces away from the
    field (marks on the wall, letters) are not added; a field not found stays the whole slice."""
    lesions = np.asarray(lesions, dtype=bool)
    if lesions.shape != field.mask.shape:
        raise ValueError(f"lesion mask is {lesions.shape}, the lung field {field.mask.shape}")
    if not field.found or not lesions.any():
        return field
    pieces, _ = ndimage.label(lesions)
    near = ndimage.binary_dilation(field.mask, iterations=max(1, round(TOUCH * max(lesions.shape))))
    touching = np.unique(pieces[near & lesions])
    return LungField(field.mask | np.isin(pieces, touching[touching > 0]), True, "")


def _analyse(img01: np.ndarray) -> tuple[LungField, dict]:
    """lung_field, plus the working-resolution intermediates (for inspection and tests)."""
    img = np.asarray(img01, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"lung_field expects a (H, W) image, got shape {img.shape}")
    shape = img.shape
    img = np.nan_to_num(img, nan=0.0, posinf=1.0, neginf=0.0)
    s = WORK_SIDE / max(shape)
    work = (max(8, round(shape[0] * s)), max(8, round(shape[1] * s)))
    g = _resize(img, work)
    lo, hi = np.percentile(g, (1, 99))
    if hi - lo < 0.02:
        return _not_found(shape, f"image is nearly constant (1st-99th percentile span {hi - lo:.3f})"), {}
    # Stretch contrast: washed-out figures and full-range slices look alike afterwards.
    g = ndimage.gaussian_filter(np.clip((g - lo) / (hi - lo), 0, 1), 1.0)
    mask, reason, info = _segment(g)
    b = max(2, round(0.03 * max(work)))
    rim = np.concatenate([g[:b].ravel(), g[-b:].ravel(), g[:, :b].ravel(), g[:, -b:].ravel()])
    if np.median(rim) > 0.6 and (mask is None or _vessel_score(g, info) < VESSEL_MIN):
        # A bright surround and no vessel-dotted lungs: perhaps an inverted figure (lungs bright,
        # body dark). Take the inverted reading only if its lungs show clearly more vessels.
        inv_mask, inv_reason, inv_info = _segment(1.0 - g)
        if inv_mask is not None and _vessel_score(1.0 - g, inv_info) > VESSEL_RATIO * _vessel_score(g, info):
            g, mask, reason, info = 1.0 - g, inv_mask, inv_reason, inv_info
            info["inverted"] = True
    info.update(work=g, mask=mask)
    if mask is None:
        return _not_found(shape, reason), info
    # Back to the input's shape: bilinear, then > 0.5, keeps the outline smooth.
    full = _resize(mask.astype(np.float32), shape, order=1) > 0.5
    return LungField(full, True, ""), info
