"""Lung fields (core/inputs/lungs.py) over every COVID-CT slice and every labelled COVID-SemiSeg slice.

    python -m train lungs --data-root ../shared/data [--out report.csv] [--sheet sheet.png] [--run RUN]

Prints one JSON summary: counts, mean coverage, the share of the labelled lesion pixels that fall
inside the lung mask (pooled, and the worst slices), milliseconds per slice, the key and reason
of every slice where no lung field was found (those are reported, never passed silently), and the slices
shown in a soft-tissue window, whose lungs are black (core/knowledge/lung_window.py), by class and split.
The same coverage and recall are given for the field as a run with `--input lungs` feeds it (`fed_*`:
grown by core.inputs.harmonise.grown, everything outside it blanked), since that is what the networks see.

For scale, each labelled slice also gets the coverage of a reference lung field drawn with its ground
truth (`lungs_with_lesions`): how much of the slice the lungs fill when every lesion is inside.

With `--run RUN`, the slices are also segmented whole by the run's segmenter (its size and inference
settings), and each lung field is measured with the segmenter's lesion pieces that touch it added
(core.inputs.lungs.with_lesions; `with_lesions_*`): does lesion knowledge fill what the classical field
misses? On the labelled COVID-SemiSeg slices this is reported by split: the segmenter learned from the
train split's masks, so read the test split. On COVID-CT the summary gives how much the lesions add to the
field by class: a difference would be a new cue between the two sources.
"""
from __future__ import annotations

import csv
import io
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from core.data.covidct import read_covidct
from core.data.imaging import check_mask_shape, read_mask, read_slice
from core.data.semiseg import read_labelled
from core.data.slices import resolve_data_root
from core.errors import UsageError
from core.inputs.harmonise import grown
from core.inputs.lungs import LUNG_VERSION, LungField, drop_small, lung_field, otsu, with_lesions
from core.knowledge.lung_window import LungsBlack, lungs_black, readable
from core.runs.checkpoint import atomic_write_text, check_writable

from .common import nonnegative_int

FIELDS = ["key", "dataset", "split", "label", "found", "reason", "coverage", "y0", "x0", "y1", "x1",
          "lesion_pixels", "lesion_inside", "lesion_recall", "fed_coverage", "fed_lesion_inside", "fed_lesion_recall",
          "with_lesions_coverage", "with_lesions_inside", "with_lesions_recall", "reference_coverage", "ms",
          "lungs_black_share", "lungs_black_of", "lungs_readable"]
REFERENCE_MIN_PIECE = 0.01  # dark pieces smaller than this share of the slice are not lung (airways, speckle)


def add_args(p):
    p.add_argument("--data-root", default=None, help="folder holding covid-ct/ and semiseg/ (default: synthetic phantoms)")
    p.add_argument("--out", default=None, help="also write one CSV row per slice here")
    p.add_argument("--sheet", default=None, help="also draw a contact sheet of 48 COVID-CT slices with their masks here (PNG)")
    p.add_argument("--worst", type=nonnegative_int, default=5,
                   help="how many worst SemiSeg slices (lesion recall) to list")
    p.add_argument("--run", default=None, help="also measure each lung field with the pieces of this run's "
                                               "segmenter's lesions (RUN/infnet/best.pt) that touch it added")


def run_lesions(run_path):
    """A function (H, W) slice in [0, 1] -> (H, W) bool lesion mask: the run's segmenter on the whole slice,
    at the run's segmenter size and inference settings, thresholded as its metrics are
    (core.inputs.fields.FieldFinder.lesions: what input lungs+lesions adds to the field)."""
    from core.config import PipelineConfig
    from core.inputs.fields import FieldFinder
    from core.models.network import SEGMENTER
    from core.runs.runfolder import RunError, RunFolder

    folder = RunFolder(run_path)
    ckpt = folder.stage(SEGMENTER) / "best.pt"
    if not ckpt.exists() or not folder.config.get("pipeline"):
        raise RunError(f"{folder.path}: no segmenter trained by `python -m train pipeline` (infnet/best.pt)")
    return FieldFinder(ckpt, PipelineConfig.of_run(folder).seg).lesions


def measure(img: np.ndarray) -> tuple[LungField, float]:
    """lung_field and the milliseconds it took (process time: other jobs on the machine don't count)."""
    t0 = time.process_time()
    field = lung_field(img)
    return field, (time.process_time() - t0) * 1000


def lungs_with_lesions(img: np.ndarray, lesion: np.ndarray) -> np.ndarray:
    """A reference lung field that needs the ground truth: the aerated lung (the darker Otsu class of the
    lightly smoothed slice, in pieces of at least REFERENCE_MIN_PIECE of it) plus the labelled lesions,
    closed and hole-filled. It holds every lesion pixel by construction, so its coverage says how much of
    a slice the lungs fill with every lesion inside. Meant for chest-cropped slices (COVID-SemiSeg):
    air outside the body is not told apart from lung here."""
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(img.astype(np.float64), 1.0)
    dark = smooth < otsu(smooth.ravel())
    aerated = drop_small(dark, REFERENCE_MIN_PIECE * img.size)
    pad = 2  # closing erodes at the image border unless the mask is padded first
    closed = ndimage.binary_closing(np.pad(aerated | lesion, pad, mode="edge"), iterations=pad)[pad:-pad, pad:-pad]
    return ndimage.binary_fill_holes(closed)


def _row(key, dataset, split, label, field: LungField, ms: float, lesion: np.ndarray | None = None,
         reference: np.ndarray | None = None, found_lesions: np.ndarray | None = None,
         black: LungsBlack | None = None) -> dict:
    fed = grown(field)
    row = {"key": key, "dataset": dataset, "split": split, "label": label, "found": field.found,
           "reason": field.reason, "coverage": round(field.coverage, 4),
           **dict(zip(("y0", "x0", "y1", "x1"), (round(v, 4) for v in field.box()))),
           "lesion_pixels": "", "lesion_inside": "", "lesion_recall": "", "fed_coverage": round(float(fed.mean()), 4),
           "fed_lesion_inside": "", "fed_lesion_recall": "", "with_lesions_coverage": "", "with_lesions_inside": "",
           "with_lesions_recall": "", "reference_coverage": "", "ms": round(ms, 1),
           "lungs_black_share": "" if black is None else round(black.share, 4),
           "lungs_black_of": "" if black is None else black.of, "lungs_readable": readable(black)}
    if lesion is not None:
        n, inside, fed_inside = int(lesion.sum()), int((lesion & field.mask).sum()), int((lesion & fed).sum())
        row.update(lesion_pixels=n, lesion_inside=inside, lesion_recall=round(inside / n, 4) if n else "",
                   fed_lesion_inside=fed_inside, fed_lesion_recall=round(fed_inside / n, 4) if n else "")
    if found_lesions is not None:
        union = with_lesions(field, found_lesions).mask
        row.update(with_lesions_coverage=round(float(union.mean()), 4))
        if lesion is not None:
            inside = int((lesion & union).sum())
            row.update(with_lesions_inside=inside, with_lesions_recall=round(inside / n, 4) if n else "")
    if reference is not None:
        row["reference_coverage"] = round(float(reference.mean()), 4)
    return row


def covidct_rows(data_root, lesions=None) -> list[dict]:
    """`lesions`: a run's segmenter (run_lesions), to also measure how much its lesions add to each field."""
    rows = []
    for s in read_covidct(data_root):
        img = read_slice(s.path)
        field, ms = measure(img)
        rows.append(_row(s.key, "covid-ct", s.split, s.label, field, ms,
                         found_lesions=None if lesions is None else lesions(img), black=lungs_black(img, field)))
    return rows


def semiseg_rows(data_root, lesions=None) -> list[dict]:
    """`lesions`: a run's segmenter (run_lesions), to also measure each field with its lesions added."""
    rows = []
    for split in ("train", "test"):
        for s in read_labelled(data_root, split):
            img = read_slice(s.image)
            lesion = check_mask_shape(read_mask(s.mask), img.shape, str(s.mask)) > 0
            field, ms = measure(img)
            rows.append(_row(s.key, "semiseg", split, 1, field, ms, lesion, lungs_with_lesions(img, lesion),
                             None if lesions is None else lesions(img), lungs_black(img, field)))
    return rows


def _with_lesions_summary(rows: list[dict]) -> dict:
    """Pooled lesion recall of the lung fields with the segmenter's lesions added, beside the fields alone."""
    n = sum(r["lesion_pixels"] for r in rows)
    return {"slices": len(rows), "mean_coverage": round(float(np.mean([r["with_lesions_coverage"] for r in rows])), 4),
            "lesion_recall_pooled": round(sum(r["with_lesions_inside"] for r in rows) / n, 4),
            "field_lesion_recall_pooled": round(sum(r["lesion_inside"] for r in rows) / n, 4)}


def summarise(ct: list[dict], seg: list[dict], worst: int = 5) -> dict:
    def block(rows):
        cov = [r["coverage"] for r in rows if r["found"]]
        return {"slices": len(rows), "found": len(cov), "not_found": len(rows) - len(cov),
                "mean_coverage_found": round(float(np.mean(cov)), 4) if cov else None,
                "mean_coverage_all": round(float(np.mean([r["coverage"] for r in rows])), 4) if rows else None,
                "fed_mean_coverage_all": round(float(np.mean([r["fed_coverage"] for r in rows])), 4) if rows else None,
                # lungs black (a soft-tissue window): by label and split, as a cue between the classes would show
                "lungs_black": {f"{split} {label}": n for (split, label), n in sorted(Counter(
                    (r["split"], "covid" if r["label"] == 1 else "non-covid") for r in rows if not r["lungs_readable"]
                ).items())}}

    out = {"lung_version": LUNG_VERSION, "covid_ct": block(ct), "semiseg_labelled": block(seg)}
    if any(r["with_lesions_coverage"] != "" for r in ct):
        # what the lesions add to the field, by class: a difference would be a new frame cue between the classes
        out["covid_ct"]["with_lesions_added_coverage"] = {
            label: round(float(np.mean([r["with_lesions_coverage"] - r["coverage"] for r in ct if r["label"] == y])), 4)
            for label, y in (("non_covid", 0), ("covid", 1)) if any(r["label"] == y for r in ct)}
    labelled = [r for r in seg if r["lesion_pixels"]]
    if labelled:
        n = sum(r["lesion_pixels"] for r in labelled)
        inside = sum(r["lesion_inside"] for r in labelled)
        by_recall = sorted(labelled, key=lambda r: r["lesion_recall"])
        out["semiseg_labelled"].update(
            lesion_recall_pooled=round(inside / n, 4),
            fed_lesion_recall_pooled=round(sum(r["fed_lesion_inside"] for r in labelled) / n, 4),
            lesion_recall_mean=round(float(np.mean([r["lesion_recall"] for r in labelled])), 4),
            lesion_recall_min=by_recall[0]["lesion_recall"],
            # coverage of the ground-truth reference (lungs_with_lesions): the scale for mean coverage
            reference_coverage_mean=round(float(np.mean([r["reference_coverage"] for r in labelled])), 4),
            worst=[{"key": r["key"], "lesion_recall": r["lesion_recall"], "coverage": r["coverage"]}
                   for r in by_recall[:worst]])
        with_lesions = [r for r in labelled if r["with_lesions_inside"] != ""]
        if with_lesions:  # by split: the segmenter learned from the train split's masks
            out["semiseg_labelled"]["with_lesions"] = {
                split: _with_lesions_summary(rs) for split in ("train", "test")
                for rs in [[r for r in with_lesions if r["split"] == split]] if rs}
    rows = ct + seg
    out["ms_per_slice"] = round(float(np.mean([r["ms"] for r in rows])), 1) if rows else None
    out["not_found"] = [{"key": r["key"], "reason": r["reason"]} for r in rows if not r["found"]]
    return out


def contact_sheet(items: list[tuple[np.ndarray, LungField, str]], path, cols: int = 8, cell: int = 224) -> Path:
    """Draw slices with their lung masks (green tint, red outline; 'NOT FOUND' and a red frame where
    no lung field was found) and a short caption, as one PNG."""
    from PIL import Image, ImageDraw
    from scipy import ndimage

    rows = -(-len(items) // cols)
    cap = 14
    sheet = Image.new("RGB", (cols * cell, rows * (cell + cap)), (0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    for i, (img, field, caption) in enumerate(items):
        rgb = np.repeat((np.clip(img, 0, 1) * 255)[..., None], 3, axis=2)
        if field.found:
            width = max(1, round(max(img.shape) / 200))
            edge = field.mask & ~ndimage.binary_erosion(field.mask, iterations=width, border_value=0)
            rgb[field.mask] = rgb[field.mask] * 0.75 + np.array([0, 64, 0])
            rgb[edge] = (255, 0, 0)
        tile = Image.fromarray(rgb.astype(np.uint8))
        tile.thumbnail((cell, cell))
        r, c = divmod(i, cols)
        x, y = c * cell + (cell - tile.width) // 2, r * (cell + cap) + (cell - tile.height) // 2
        sheet.paste(tile, (x, y))
        if not field.found:
            draw.rectangle([x, y, x + tile.width - 1, y + tile.height - 1], outline=(255, 0, 0), width=3)
            draw.text((x + 4, y + 4), "NOT FOUND", fill=(255, 0, 0))
        draw.text((c * cell + 2, r * (cell + cap) + cell), caption[:36], fill=(255, 255, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def sheet_slices(data_root, n: int = 48, seed: int = 0) -> list:
    """A fixed random pick of COVID-CT slices, half of each class."""
    slices = read_covidct(data_root)
    rng = np.random.default_rng(seed)
    pick = []
    for label in (1, 0):
        pool = [s for s in slices if s.label == label]
        pick += [pool[i] for i in rng.choice(len(pool), min(len(pool), n // 2), replace=False)]
    return [pick[i] for i in rng.permutation(len(pick))]


def check_sheet(path) -> None:
    """--sheet as a picture file Pillow can write (by its extension) and a path that can be written: said before
    any slice is read, not after minutes of work."""
    from PIL import Image

    Image.init()  # registers every format Pillow has, with their extensions
    suffix = Path(path).suffix.lower()
    if Image.registered_extensions().get(suffix) not in Image.SAVE:
        raise UsageError(f"--sheet {path}: {suffix or 'no extension'} is not a picture format Pillow writes; "
                         "use .png")
    check_writable(path)


def run(args) -> dict:
    if args.out:
        check_writable(args.out)
    if args.sheet:
        check_sheet(args.sheet)
    lesions = run_lesions(args.run) if args.run else None  # a bad --run fails before any slice is read
    root, _ = resolve_data_root(args.data_root)
    ct = covidct_rows(root, lesions)
    seg = semiseg_rows(root, lesions)
    summary = summarise(ct, seg, args.worst)
    if args.out:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, FIELDS)
        writer.writeheader()
        writer.writerows(ct + seg)
        atomic_write_text(args.out, buf.getvalue())
    if args.sheet:
        items = []
        for s in sheet_slices(root):
            img = read_slice(s.path)
            items.append((img, lung_field(img), f"{'C' if s.label else 'N'} {Path(s.key).name}"))
        contact_sheet(items, args.sheet)
    print(json.dumps(summary, indent=1))
    return summary
