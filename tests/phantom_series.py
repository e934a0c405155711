"""Phantom CT series for the scan tests: phantom slices (core.data.phantom) stacked into a DICOM series or a
NIfTI volume, with lesions in one lung only, so a scan's opacity per lung has a known answer.

A slice is a COVID phantom's image-left half (the patient's right lung, with its lesions) beside the
image-right half of the lesion-free phantom of the same seed (same anatomy, other noise): every lesion
lies in the right lung. Its Hounsfield units are the phantom's lung-window grey read back through
core.data.imaging.window.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from core.data.imaging import LUNG_WINDOW
from core.data.phantom import make_phantom
from tests.dicom_series import ct_slice, series


@dataclass
class PhantomScan:
    hu: list[np.ndarray]  # (H, W) Hounsfield units, body order (foot to head)
    lesion: list[np.ndarray]  # (H, W) bool, every lesion pixel (all in the patient's right lung = image left)
    lung_side: str = "right"


def right_lung_lesions(n: int, size: int = 96, seed: int = 0, covid: bool = True) -> PhantomScan:
    """n phantom slices whose lesions all lie in the right lung (none with covid=False)."""
    level, width = LUNG_WINDOW
    hu, lesion = [], []
    k = seed
    while len(hu) < n:
        sick, clean = make_phantom(k, True, size), make_phantom(k, False, size)
        k += 1
        half = size // 2
        mask = np.zeros((size, size), bool)
        mask[:, :half] = sick.lesion[:, :half] > 0
        if covid and mask.sum() < 0.01 * size * size:  # too little lesion on the right for a clear answer
            continue
        img = clean.image.copy()
        if covid:
            img[:, :half] = sick.image[:, :half]
        hu.append(np.clip(img * width + level - width / 2, -1024, 3000))
        lesion.append(mask if covid else np.zeros_like(mask))
    return PhantomScan(hu, lesion)


def dicom_series(scan: PhantomScan, spacing: float = 5.0, pixel_spacing: tuple = (0.8, 0.7)):
    """The slices as one DICOM series (pydicom datasets in body order): positions along +z (foot to head),
    Instance Numbers counting down, as tests.dicom_series.series writes them."""
    template = series(len(scan.hu), spacing=spacing, size=4)
    out = []
    for ds, hu in zip(template, scan.hu):
        out.append(ct_slice(hu, series_uid=str(ds.SeriesInstanceUID), instance=int(ds.InstanceNumber),
                            position=tuple(float(v) for v in ds.ImagePositionPatient),
                            location=float(ds.SliceLocation), pixel_spacing=pixel_spacing))
    return out


def nifti_bytes(scan: PhantomScan, spacing: float = 5.0, pixel_spacing: tuple = (0.8, 0.7)) -> bytes:
    """The slices as a NIfTI-1 volume (RAS affine, slices foot to head), in the radiological view
    core.data.imaging.nifti_slice gives back."""
    import nibabel as nib

    # nifti_slice shows stored (x, y) as rows = reversed y, columns = reversed x: store the transpose, flipped
    vol = np.round(np.stack([h[::-1, ::-1].T for h in scan.hu], axis=-1)).astype(np.int16)  # whole HU, as DICOM stores
    affine = np.diag([pixel_spacing[1], pixel_spacing[0], spacing, 1.0])
    buf = io.BytesIO()
    buf.write(nib.Nifti1Image(vol, affine).to_bytes())
    return buf.getvalue()
