"""Inputs that are no chest CT, and how often the out-of-distribution flag (core.trust.ood) catches them.

photo     natural photographs shipped with scikit-image (skimage.data), in grey
lungless  a chest phantom (core.data.phantom) whose lung field (core.inputs.lungs) is filled with soft tissue
noise     uniform and Gaussian noise
text      a figure of text rendered with PIL

`measure` scores them through the run's whole pipeline (TrainedRun.analyse, then fusion_vector) and the image
check (core.trust.image_check), beside the run's own COVID-CT test slices (their cached vectors), and reports
HELD_OUT_PHOTOS apart. The product's floors, on the real run: at most
TEST_FLAGGED_AT_MOST of the test slices flagged, at least PROBES_FLAGGED_AT_LEAST of these inputs.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from core.data.imaging import window
from core.data.phantom import make_phantom
from core.inputs.lungs import lung_field
from core.runs.runfolder import RunError
from core.trust.image_check import measure as statistics
from core.trust.ood import (ALPHA, FLAG_COLUMN, IMAGE_COLUMN, LUNGS_COLUMN, NETWORK_COLUMN, WHY_COLUMN, fit_run,
                            run_rows, run_statistics)

PHOTOS = ("camera", "astronaut", "coffee", "chelsea", "rocket", "coins", "moon", "hubble_deep_field")
# skimage.data's other images shipped with the wheel: never looked at when the flag's image statistics were
# chosen (on PHOTOS), so their flag rate says how far that choice carries
HELD_OUT_PHOTOS = ("brick", "grass", "gravel", "cell", "clock", "horse", "page", "text", "immunohistochemistry",
                   "retina", "shepp_logan_phantom", "binary_blobs", "logo", "microaneurysms", "colorwheel",
                   "checkerboard", "cat")
KINDS = ("photo", "lungless", "noise", "text")
PER_KIND = 4  # lungless phantoms, noise images and text figures each
SIZE = 256
SOFT_TISSUE_HU = 40.0
TEST_FLAGGED_AT_MOST = 0.05
PROBES_FLAGGED_AT_LEAST = 0.95
TEXT = ("Figure 3. Receiver operating characteristic curves of the three readers; the area under each curve is "
        "given in the legend. Values are mean (standard deviation) over five folds, p < 0.05 after correction.")


def photo(name: str) -> np.ndarray:
    from skimage import data
    from skimage.color import rgb2gray

    img = np.asarray(getattr(data, name)(), np.float64)
    if img.ndim == 3:  # RGB or RGBA
        img = rgb2gray(img[..., :3])
    img = img - img.min()
    return (img / max(img.max(), 1e-12)).astype(np.float32)


def lungless(seed: int, size: int = SIZE) -> np.ndarray:
    """A chest phantom with its lungs (and their rim) filled with soft tissue and the phantom's noise."""
    p = make_phantom(seed, covid=False, size=size)
    field = lung_field(p.image)
    if not field.found:
        raise ValueError(f"phantom {seed}: no lung field to fill ({field.reason})")
    lungs = ndimage.binary_dilation(field.mask, iterations=2)
    rng = np.random.default_rng(seed)
    img = p.image.copy()
    tissue = window(np.full(int(lungs.sum()), SOFT_TISSUE_HU) + rng.normal(0, 25, int(lungs.sum())))
    img[lungs] = tissue
    return img


def noise(seed: int, size: int = SIZE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if seed % 2:
        return np.clip(rng.normal(0.5, 0.2, (size, size)), 0, 1).astype(np.float32)
    return rng.random((size, size)).astype(np.float32)


def text_figure(seed: int, size: int = SIZE) -> np.ndarray:
    """Dark text on a light page (or light on dark, every other seed), lines wrapped to the page; each seed starts
    at another word and draws another font size."""
    rng = np.random.default_rng(seed)
    words = TEXT.split()
    start = int(rng.integers(len(words)))
    words = words[start:] + words[:start]
    dark = seed % 2 == 0
    page = Image.new("L", (size, size), 245 if dark else 20)
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=int(rng.integers(12, 20)))
    y, line = 4, ""
    for w in words * 4:
        trial = f"{line} {w}".strip()
        if draw.textlength(trial, font=font) > size - 8:
            draw.text((4, y), line, fill=10 if dark else 235, font=font)
            y, line = y + font.size + 3, w
            if y > size - font.size:
                break
        else:
            line = trial
    return np.asarray(page, np.float32) / 255


def probes(per_kind: int = PER_KIND, seed: int = 0) -> list[tuple[str, str, np.ndarray]]:
    """(kind, name, (H, W) image in [0, 1]) of every input that is no chest CT."""
    out = [("photo", n, photo(n)) for n in PHOTOS]
    for i in range(per_kind):
        s = seed * 1000 + i
        out += [("lungless", f"lungless-{i}", lungless(s)), ("noise", f"noise-{i}", noise(s)),
                ("text", f"text-{i}", text_figure(s))]
    return out


def measure(run, tr, alpha: float = ALPHA, per_kind: int = PER_KIND, seed: int = 0) -> dict:
    """Flag rates of the run's flag (core.trust.ood.fit_run) on its COVID-CT test slices, on the probes and on
    the held-out photographs; for the probes, also what each of its checks catches alone."""
    rows = run_rows(run)
    flag = fit_run(run, alpha, rows)
    test, keys = rows["test"]
    if not len(test):
        raise RunError(f"{run.path}: no COVID-CT test slices in its feature cache to measure the flag on")
    tested = flag.assess(test, run_statistics(run, keys))

    def assess(kind, name, img) -> dict:
        a = flag.assess(tr.fusion_vector(tr.analyse(img)), [statistics(img)]).iloc[0]
        return {"kind": kind, "name": name, "network": float(a[NETWORK_COLUMN]), "image": float(a[IMAGE_COLUMN]),
                "lungs": bool(a[LUNGS_COLUMN]), "flagged": bool(a[FLAG_COLUMN]), "why": a[WHY_COLUMN]}

    probed = [assess(*p) for p in probes(per_kind, seed)]
    held = [assess("held-out photo", n, photo(n)) for n in HELD_OUT_PHOTOS]
    rate = lambda rs: float(np.mean([r["flagged"] for r in rs]))
    by_kind = {k: rate([r for r in probed if r["kind"] == k]) for k in KINDS}
    probe_rate, test_rate = rate(probed), float(tested[FLAG_COLUMN].mean())
    return {"rule": flag.rule(), "alpha": alpha, "false_alarm_bound": flag.false_alarm_bound,
            "thresholds": {"network": flag.network.threshold, "image": flag.image.threshold},
            "shrinkage": flag.network.distance.shrinkage, "n_train": flag.n_train, "n_val": flag.n_val,
            "n_test": len(test), "test_flag_rate": test_rate, "probe_flag_rate": probe_rate,
            "probe_flag_rate_by_kind": by_kind,
            "probe_flag_rate_by_check": {"network": float(np.mean([r["network"] > 1 for r in probed])),
                                         "image": float(np.mean([not r["lungs"] or r["image"] > 1 for r in probed]))},
            "held_out_photo_flag_rate": rate(held), "probes": probed + held,
            "floors": {"test_flagged_at_most": TEST_FLAGGED_AT_MOST, "probes_flagged_at_least": PROBES_FLAGGED_AT_LEAST},
            "meets_floors": test_rate <= TEST_FLAGGED_AT_MOST and probe_rate >= PROBES_FLAGGED_AT_LEAST}
