"""Synthetic CT phantoms: the embedded default data set and the fast test data.

A phantom is an axial chest slice in the lung window: body outline with a fat ring, two lungs,
vessels, spine, noise. COVID-positive phantoms carry ground-glass (hazy) and consolidation-like
(solid) lesions near the lung periphery, with exact masks (1 = ground glass, 2 = consolidation);
pneumonia phantoms (`cap=True`, not COVID) carry one dense, central consolidation in one lung.
Deterministic by seed. `write_dataset` lays phantoms out exactly like the real COVID-CT,
COVID-SemiSeg and COVID-CT-MD folders (the last as DICOM series), so every reader and every stage takes
one path. Never a real-data result.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from core.data.imaging import window

SYNTHETIC_MARKER = "SYNTHETIC_PHANTOMS.json"


@dataclass
class Phantom:
    image: np.ndarray  # (H, W) float32 in [0, 1], lung window
    lesion: np.ndarray  # (H, W) uint8: 0 none, 1 ground glass, 2 consolidation
    label: int  # 1 COVID (has lesions), 0 not
    hu: np.ndarray | None = None  # (H, W) float32 Hounsfield units the image was windowed from


def _ellipse(h, w, cy, cx, ry, rx, angle=0.0):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c, s = np.cos(angle), np.sin(angle)
    y, x = yy - cy, xx - cx
    u, v = x * c + y * s, -x * s + y * c
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def make_phantom(seed: int, covid: bool, size: int = 256, cap: bool = False) -> Phantom:
    """`cap`: a non-COVID pneumonia (one dense consolidation near one lung's hilum) instead of clear lungs."""
    if covid and cap:
        raise ValueError("a phantom is COVID or community-acquired pneumonia, not both")
    rng = np.random.default_rng(seed)
    h = w = size
    hu = np.full((h, w), -1000.0, np.float32)  # air
    cy, cx = h * rng.uniform(0.48, 0.53), w * rng.uniform(0.47, 0.53)
    body_ry, body_rx = h * rng.uniform(0.33, 0.38), w * rng.uniform(0.42, 0.47)
    body = _ellipse(h, w, cy, cx, body_ry, body_rx)
    hu[body] = -100.0  # fat ring
    hu[_ellipse(h, w, cy, cx, body_ry * 0.9, body_rx * 0.92)] = 40.0  # soft tissue
    lungs = np.zeros((h, w), bool)
    for side in (-1, 1):
        ly = cy - h * rng.uniform(0.0, 0.03)
        lx = cx + side * w * rng.uniform(0.17, 0.21)
        lung = _ellipse(h, w, ly, lx, body_ry * rng.uniform(0.68, 0.78), body_rx * rng.uniform(0.34, 0.4),
                        angle=side * rng.uniform(0.05, 0.2))
        lungs |= lung
    hu[lungs] = rng.uniform(-880, -820)
    # Vessels: small bright dots inside the lungs, denser towards the hilum.
    ys, xs = np.nonzero(lungs)
    for i in rng.choice(len(ys), size=min(len(ys), int(rng.integers(25, 45))), replace=False):
        r = rng.uniform(0.6, 2.0) * size / 256
        hu[_ellipse(h, w, ys[i], xs[i], r, r)] = rng.uniform(-100, 60)
    # Spine and heart: bright structures between and below the lungs.
    hu[_ellipse(h, w, cy + body_ry * 0.72, cx, h * 0.05, w * 0.05)] = 700.0
    hu[_ellipse(h, w, cy + h * 0.02, cx + w * 0.03, h * 0.1, w * 0.08) & ~lungs] = 45.0

    lesion = np.zeros((h, w), np.uint8)
    if covid:
        # Peripheral lesions: sample centres near the lung boundary.
        edge = lungs & ~ndimage.binary_erosion(lungs, iterations=max(2, size // 20))
        ey, ex = np.nonzero(edge)
        for _ in range(int(rng.integers(1, 4))):
            i = rng.integers(len(ey))
            ry, rx = size * rng.uniform(0.03, 0.08), size * rng.uniform(0.03, 0.08)
            blob = _ellipse(h, w, ey[i], ex[i], ry, rx, angle=rng.uniform(0, np.pi)) & lungs
            kind = 2 if rng.random() < 0.35 else 1
            lesion[blob & (lesion == 0)] = kind
        ggo = lesion == 1
        hu[ggo] = hu[ggo] * 0.45 + rng.uniform(-500, -380) * 0.55  # hazy: vessels still show through
        hu[lesion == 2] = rng.uniform(-60, 30)
    if cap:  # lobar pneumonia: one solid consolidation in one lung, towards its inner (hilar) side
        side = lungs & ((np.mgrid[0:h, 0:w][1] < cx) if rng.random() < 0.5 else (np.mgrid[0:h, 0:w][1] >= cx))
        inner = side & ndimage.binary_erosion(side, iterations=max(2, size // 16))
        iy, ix = np.nonzero(inner)
        i = rng.integers(len(iy))
        blob = _ellipse(h, w, iy[i], ix[i], size * rng.uniform(0.06, 0.1), size * rng.uniform(0.05, 0.08)) & side
        lesion[blob] = 2
        hu[blob] = rng.uniform(-40, 40)
    hu = ndimage.gaussian_filter(hu, sigma=0.8 * size / 256)
    hu += rng.normal(0, 25, hu.shape).astype(np.float32)
    return Phantom(image=window(hu), lesion=lesion, label=int(covid), hu=hu)


def _save_png(path: Path, arr01: np.ndarray) -> None:
    Image.fromarray((np.clip(arr01, 0, 1) * 255).round().astype(np.uint8)).save(path)


def _save_mask(path: Path, lesion: np.ndarray, multiclass: bool) -> None:
    if multiclass:
        img = Image.fromarray(lesion, mode="P")
        img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 - 3) * 3)
        img.save(path)
    else:
        Image.fromarray(((lesion > 0) * 255).astype(np.uint8)).save(path)


# COVID-CT-MD's patients (core.data.ctmd): name -> diagnosis
CTMD_PATIENTS = {"P001": "COVID-19", "P002": "COVID-19", "normal001": "Normal", "normal002": "Normal",
                 "cap001": "CAP", "cap002": "CAP"}
CTMD_SPACING = 4.0  # mm between the slices of a phantom series (COVID-CT-MD keeps every second 2-mm slice)


def _dicom_slice(hu: np.ndarray, series_uid: str, instance: int, z: float) -> bytes:
    """One uncompressed CT slice as a scanner writes it: 12-bit stored values, slope 1, intercept -1024."""
    import io

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[series_uid, str(instance)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.InstanceNumber = "CT", series_uid, instance
    ds.Rows, ds.Columns = hu.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1.0, -1024.0
    ds.PixelSpacing = [0.7, 0.7]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.ImagePositionPatient = [-180.0, -180.0, float(z)]
    ds.SliceLocation = float(z)
    ds.PixelData = np.clip(np.round(hu + 1024), 0, 4095).astype("<u2").tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return buf.getvalue()


def write_ctmd(root: Path, n_slices: int, size: int, seed: int) -> None:
    """covid-ct-md/ as the real sample lays it out: one DICOM series per patient, slices.csv with the
    slice-level infection label. COVID-19 and CAP patients' end slices carry no lesion."""
    import csv

    from pydicom.uid import generate_uid

    md = root / "covid-ct-md"
    rows = []
    for p, (patient, diagnosis) in enumerate(CTMD_PATIENTS.items()):
        folder = md / diagnosis / patient
        folder.mkdir(parents=True, exist_ok=True)
        uid = generate_uid(entropy_srcs=["phantom", patient, str(seed)])
        for k in range(n_slices):
            sick = 0 < k < n_slices - 1 and diagnosis != "Normal"
            ph = make_phantom(seed * 100003 + 70_000 + 100 * p + k, sick and diagnosis == "COVID-19", size,
                              cap=sick and diagnosis == "CAP")
            name = f"{diagnosis}/{patient}/IM{(k * 7919 + p) % 10_000:04d}.dcm"  # names say nothing of the order
            z = -300.0 + k * CTMD_SPACING
            (md / name).write_bytes(_dicom_slice(ph.hu, uid, 2 * (n_slices - k), z))
            visible = "" if diagnosis == "Normal" else int(bool(ph.lesion.any()))
            rows.append([name, diagnosis, patient, 2 * (n_slices - k), z, visible])
    with open(md / "slices.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "diagnosis", "patient", "instance", "slice_location", "infection_visible"])
        w.writerows(rows)


def write_dataset(root: str | Path, n_per_class_split: dict | None = None, n_seg_train: int = 12,
                  n_seg_test: int = 8, n_unlabelled: int = 24, size: int = 128, seed: int = 0,
                  n_ctmd_slices: int = 6) -> Path:
    """Write a phantom data set laid out like `../shared/data` (covid-ct/, semiseg/, covid-ct-md/). Idempotent."""
    root = Path(root)
    counts = n_per_class_split or {"train": 24, "val": 10, "test": 10}
    spec = {"counts": counts, "seg": [n_seg_train, n_seg_test, n_unlabelled], "size": size, "seed": seed,
            "ctmd": n_ctmd_slices}
    marker = root / SYNTHETIC_MARKER
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return root
    ct = root / "covid-ct"
    for sub in ("CT_COVID", "CT_NonCOVID", "splits"):
        (ct / sub).mkdir(parents=True, exist_ok=True)
    k = 0
    for split, n in counts.items():
        for cls, folder in ((1, "CT_COVID"), (0, "CT_NonCOVID")):
            names = []
            for i in range(n):
                name = f"phantom-{split}-{i:04d}.png"
                _save_png(ct / folder / name, make_phantom(seed * 100003 + k, bool(cls), size).image)
                names.append(name)
                k += 1
            (ct / "splits" / f"{split}{folder}.txt").write_text("\n".join(names) + "\n")
    seg = root / "semiseg"
    layout = {
        "train": ("TrainingSet/LungInfection-Train/Doctor-label", "TrainingSet/MultiClassInfection-Train", n_seg_train),
        "test": ("TestingSet/LungInfection-Test", "TestingSet/MultiClassInfection-Test", n_seg_test),
    }
    for split, (binary_dir, multi_dir, n) in layout.items():
        for d in (seg / binary_dir / "Imgs", seg / binary_dir / "GT", seg / multi_dir / "Imgs", seg / multi_dir / "GT"):
            d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            p = make_phantom(seed * 100003 + 50_000 + k, True, size)
            k += 1
            rgb = Image.fromarray((p.image * 255).round().astype(np.uint8)).convert("RGB")
            rgb.save(seg / binary_dir / "Imgs" / f"{i}.jpg", quality=95)
            rgb.save(seg / multi_dir / "Imgs" / f"{i}.jpg", quality=95)
            _save_mask(seg / binary_dir / "GT" / f"{i}.png", p.lesion, multiclass=False)
            _save_mask(seg / multi_dir / "GT" / f"{i}.png", p.lesion, multiclass=True)
    unl = seg / "TrainingSet/LungInfection-Train/Pseudo-label/Imgs"
    unl.mkdir(parents=True, exist_ok=True)
    for i in range(n_unlabelled):
        p = make_phantom(seed * 100003 + 90_000 + k, bool(i % 2), size)
        k += 1
        Image.fromarray((p.image * 255).round().astype(np.uint8)).save(unl / f"phantom_org_{i:04d}.jpg", quality=95)
    write_ctmd(root, n_ctmd_slices, size, seed)
    marker.write_text(json.dumps(spec))
    return root


def is_synthetic(root: str | Path) -> bool:
    return (Path(root) / SYNTHETIC_MARKER).exists()
