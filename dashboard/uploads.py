"""Uploaded slices (the New slice page): a harmless display name, NIfTI volumes' slice count, reading and
analysing the file without ever raising, and keeping the last upload's result in the session so a tau
move or any other rerun does not analyse the file again.

The file is read in memory; its name is only shown and used to tell .nii/.nii.gz/.dcm apart, never as a path.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace

import numpy as np

from core.data.imaging import (
    ImageReadError,
    dicom_frame_count,
    nifti_slice_count,
    read_slice_with_hu,
    sniff_format,
)
from core.data.series import not_axial_slice, slice_plane
from core.inference import LesionReader
from core.pictures.slice_images import analysis_images
from dashboard.data import MODEL_LOCK

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
SESSION_KEY = "_upload_cache"


def display_name(filename: str | None) -> str:
    """A harmless label for an uploaded file: its base name, odd characters replaced, short."""
    base = re.split(r"[\\/]", filename or "")[-1]
    base = _SAFE.sub("_", base).strip("._") or "upload"
    return base[-80:]


def is_nifti(data: bytes, filename: str) -> bool:
    return sniff_format(data[:400], display_name(filename)) == "nifti"


def upload_slice_count(data: bytes, filename: str) -> int:
    """Axial slices of an uploaded NIfTI volume (ImageReadError when it is not one)."""
    return nifti_slice_count(data, display_name(filename))


def is_dicom(data: bytes, filename: str) -> bool:
    return sniff_format(data[:400], display_name(filename)) == "dicom"


def upload_frame_count(data: bytes, filename: str) -> int:
    """Frames of an uploaded DICOM file (1: one slice; ImageReadError when it cannot be read)."""
    return dicom_frame_count(data, display_name(filename))


def not_axial(data: bytes, filename: str, frame: int | None) -> str:
    """Why an uploaded DICOM slice (frame `frame` of a multi-frame file) is not scored: not axial ("" when it is)."""
    name = display_name(filename)
    return not_axial_slice(name, slice_plane(data, name, frame))


@dataclass
class UploadResult:
    error: str | None = None
    slice01: np.ndarray | None = None
    analysis: object = None
    fusion_vector: np.ndarray | None = None
    name: str = "upload"
    digest: str = ""
    hu: np.ndarray | None = None  # the slice in Hounsfield units (core.data.imaging.slice_hu); None: no CT numbers


def digest(data: bytes) -> str:
    """What an upload is known by in caches: its content's digest."""
    return hashlib.sha256(data or b"").hexdigest()


def read_upload(data: bytes, filename: str, slice_index: int | None = None) -> UploadResult:
    """The uploaded slice read (UploadResult.slice01, and .hu where it holds CT numbers), not analysed. Never raises:
    a bad file gives UploadResult.error."""
    name, short = display_name(filename), digest(data)[:16]
    try:
        slice01, hu = read_slice_with_hu(data, name, slice_index)  # one decode, not one for each
        return UploadResult(slice01=slice01, name=name, digest=short, hu=hu)
    except ImageReadError as exc:
        return UploadResult(error=str(exc), name=name, digest=short)
    except Exception as exc:  # a reader library failing in a way we did not foresee
        return UploadResult(error=f"{name}: this file could not be read as a CT slice ({type(exc).__name__}).",
                            name=name, digest=short)


def analyse_upload(tr, data: bytes, filename: str, slice_index: int | None = None, tau: float | None = None
                   ) -> UploadResult:
    """Read and analyse an uploaded slice with the trained run `tr`, or with a run's segmenter alone
    (core.inference.LesionReader: no tau, no fusion vector). Never raises: a bad file gives UploadResult.error."""
    result = read_upload(data, filename, slice_index)
    if result.error:
        return result
    try:
        with MODEL_LOCK:
            if isinstance(tr, LesionReader):
                a, vec = tr.analyse(result.slice01), None
            else:
                a = tr.analyse(result.slice01, tau)
                vec = tr.fusion_vector(a)
    except Exception as exc:
        return replace(result, slice01=None, error=f"{result.name}: the slice was read but could not be analysed "
                                                   f"({type(exc).__name__}).")
    return replace(result, analysis=a, fusion_vector=vec)


def upload_images(tr, a) -> dict:
    """slice_images.analysis_images of a live analysis, its fusion CAM computed under the model lock."""
    with MODEL_LOCK:
        cam = tr.fusion_cam(a)
    return analysis_images(a, cam)


def cached_upload(state, tr, run_name: str, run_stamp: str, raw: bytes, filename: str,
                  slice_index: int | None) -> tuple[UploadResult, dict]:
    """analyse_upload + its images, kept in the session (`state`) for the last upload. Returns (result,
    images); images is {} on error."""
    k = (run_name, run_stamp, digest(raw), slice_index)
    hit = state.get(SESSION_KEY)
    if hit is not None and hit[0] == k:
        return hit[1], hit[2]
    result = analyse_upload(tr, raw, filename, slice_index)
    images = {}
    if result.error is None:
        try:
            images = upload_images(tr, result.analysis)
        except Exception as exc:
            result = replace(result, error=f"{result.name}: the slice was analysed but its maps could not be drawn "
                                           f"({type(exc).__name__}).", analysis=None)
    state[SESSION_KEY] = (k, result, images)
    return result, images


WINDOWS_KEY = "_upload_windows"  # the session's last upload shown in other lung windows


def cached_window_calls(state, tr, run_name: str, run_stamp: str, result: UploadResult, slice_index: int | None,
                        branch: str, threshold: float) -> tuple[list | None, str]:
    """core.audits.windows.calls_in_windows of an upload that holds CT numbers (`result.hu`), kept in the session for
    the last upload; (calls, "") or (None, why it could not be done)."""
    from core.audits.windows import calls_in_windows

    k = (run_name, run_stamp, result.digest, slice_index, branch)
    hit = state.get(WINDOWS_KEY)
    if hit is not None and hit[0] == k:
        return hit[1]
    try:
        with MODEL_LOCK:
            found = (calls_in_windows(tr, result.hu, branch, threshold), "")
    except Exception as exc:  # the slice read once already: a failure here is the analysis's, said
        found = (None, f"{result.name}: could not be shown in other lung windows ({type(exc).__name__})")
    state[WINDOWS_KEY] = (k, found)
    return found
