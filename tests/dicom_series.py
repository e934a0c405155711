"""Small CT series written with pydicom for the tests (no binary fixture is committed).

Slice k of a series holds air (-1000 HU) with a square of -1000 + 60 (k + 1) HU and a bright mark in its
top-left corner, so every slice windows to a different image and a flip would show.
"""
from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests.test_imaging import ct_dataset, dicom_bytes

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def slice_hu(k: int, size: int = 24) -> np.ndarray:
    hu = np.full((size, size), -1000.0)
    hu[size // 4:3 * size // 4, size // 4:3 * size // 4] = -1000.0 + 60.0 * (k + 1)
    hu[:2, :3] = 100.0
    return hu


def ct_slice(hu: np.ndarray, *, series_uid: str | None, instance: int | None, position: tuple | None,
             orientation: tuple | None = AXIAL, location: float | None = None,
             pixel_spacing: tuple = (0.7, 0.7)) -> Dataset:
    """One CT slice as a scanner writes it: unsigned 12-bit stored values, slope 1, intercept -1024."""
    ds = ct_dataset(hu, slope=1.0, intercept=-1024.0)
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
    ds.PixelData = np.round(hu + 1024).astype("<u2").tobytes()
    ds.SeriesDescription = "Thorax 2.0 lung"
    ds.PixelSpacing = list(pixel_spacing)
    if series_uid is not None:
        ds.SeriesInstanceUID = series_uid
    if instance is not None:
        ds.InstanceNumber = instance
    if position is not None:
        ds.ImagePositionPatient = [float(v) for v in position]
    if orientation is not None:
        ds.ImageOrientationPatient = [float(v) for v in orientation]
    if location is not None:
        ds.SliceLocation = location
    return ds


def series(n: int = 6, *, spacing: float = 2.5, z0: float = -100.0, series_uid: str | None = None,
           orientation: tuple = AXIAL, size: int = 24, syntax: str | None = None) -> list[Dataset]:
    """n slices in body order: positions z0 + k * spacing along the normal, Slice Location likewise,
    Instance Numbers counting down (as COVID-CT-MD's do), so no field's order is the file order."""
    uid = series_uid or generate_uid()
    normal = np.cross(orientation[:3], orientation[3:])
    out = []
    for k in range(n):
        pos = np.array([-120.0, -130.0, 0.0]) + (z0 + k * spacing) * normal
        ds = ct_slice(slice_hu(k, size), series_uid=uid, instance=200 - k, position=tuple(pos),
                      orientation=orientation, location=z0 + k * spacing)
        if syntax is not None:
            ds.compress(syntax)  # pydicom writes RLE itself; JPEG 2000 through pylibjpeg-openjpeg
        out.append(ds)
    return out


def enhanced_ct(datasets: list[Dataset], order: list[int] | None = None, positions: bool = True) -> Dataset:
    """The slices of `series` as one Enhanced CT multi-frame file, as some scanners export a whole series: the
    frames stored in `order` (default: as given), each frame's place in its Per-frame Functional Groups (Plane
    Position), what they share (pixel spacing, orientation, the rescale to HU) in the Shared Functional Groups
    and nowhere at the top level. `positions=False` leaves every frame without a place."""
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedCTImageStorage

    order = list(range(len(datasets))) if order is None else order
    first = datasets[0]
    ds = ct_dataset(np.zeros((first.Rows, first.Columns)), slope=1.0, intercept=-1024.0)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
    del ds.RescaleSlope, ds.RescaleIntercept
    ds.SeriesInstanceUID, ds.SeriesDescription = first.SeriesInstanceUID, "Thorax enhanced"
    ds.NumberOfFrames = len(order)
    ds.PixelData = b"".join(datasets[k].PixelData for k in order)

    def item(**fields) -> Dataset:
        d = Dataset()
        for keyword, value in fields.items():
            setattr(d, keyword, value)
        return d

    orientation = item(ImageOrientationPatient=list(first.ImageOrientationPatient))
    shared = item(PixelMeasuresSequence=Sequence([item(PixelSpacing=list(first.PixelSpacing), SliceThickness=2.0)]),
                  PlaneOrientationSequence=Sequence([orientation]),
                  PixelValueTransformationSequence=Sequence([item(RescaleSlope=1.0, RescaleIntercept=-1024.0,
                                                                  RescaleType="HU")]))
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.PerFrameFunctionalGroupsSequence = Sequence([
        item(PlanePositionSequence=Sequence([item(ImagePositionPatient=list(datasets[k].ImagePositionPatient))]))
        if positions else item(FrameContentSequence=Sequence([item(InStackPositionNumber=i + 1)]))
        for i, k in enumerate(order)])
    return ds


def write_series(folder: Path, datasets: list[Dataset], prefix: str = "IM", seed: int = 0) -> list[Path]:
    """Write under shuffled file names; returns the paths in body order."""
    folder.mkdir(parents=True, exist_ok=True)
    numbers = list(range(len(datasets)))
    random.Random(seed).shuffle(numbers)
    paths = []
    for ds, number in zip(datasets, numbers):
        path = folder / f"{prefix}{number:04d}.dcm"
        path.write_bytes(dicom_bytes(ds))
        paths.append(path)
    return paths


CTMD_PATIENTS = {"P001": "COVID-19", "P002": "COVID-19", "normal001": "Normal", "normal002": "Normal",
                 "cap001": "CAP", "cap002": "CAP"}


def write_ctmd(data_root: Path, n: int = 3) -> Path:
    """A COVID-CT-MD-shaped folder (covid-ct-md/<diagnosis>/<patient>/*.dcm and slices.csv), n slices a patient."""
    root = data_root / "covid-ct-md"
    shutil.rmtree(root, ignore_errors=True)  # a phantom data set brings its own (core.data.phantom.write_ctmd)
    rows = ["file,diagnosis,patient,instance,slice_location,infection_visible"]
    for i, (patient, diagnosis) in enumerate(CTMD_PATIENTS.items()):
        datasets = series(n, spacing=4.0, z0=-300.0 + i)
        paths = write_series(root / diagnosis / patient, datasets, prefix=f"{patient}_", seed=i)
        for ds, path in zip(datasets, paths):
            visible = "" if diagnosis == "Normal" else str(int(ds.InstanceNumber) % 2)
            rows.append(f"{path.relative_to(root).as_posix()},{diagnosis},{patient},{ds.InstanceNumber},"
                        f"{ds.SliceLocation},{visible}")
    (root / "slices.csv").write_text("\n".join(rows) + "\n")
    return root
