"""Read any slice a user can hand us into one float32 grey image in [0, 1].

One entry point, `read_slice`, for every later use (training data, prediction, dashboard upload):
PNG/JPEG/BMP/TIFF by content (COVID-CT has JPEG data in files named .png), DICOM through pydicom
(modality LUT to Hounsfield units, then the lung window W1500/L-600), NIfTI through nibabel
(canonical orientation, one axial slice). Every failure is an `ImageReadError` naming the file.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

# A CT slice is at most a few thousand pixels a side; anything bigger is a decompression bomb.
MAX_PIXELS = 8192 * 8192
MIN_SIDE = 16
LUNG_WINDOW = (-600.0, 1500.0)  # level, width in Hounsfield units

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


class ImageReadError(ValueError):
    """A slice could not be read; the message names the file and the problem."""

    def __init__(self, name: str, problem: str):
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


def sniff_format(data: bytes, name: str = "") -> str:
    """Say what a file is from its bytes (and, for NIfTI, its name): png, jpeg, dicom, nifti or image."""
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data.startswith(_JPEG_MAGIC):
        return "jpeg"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    lower = name.lower()
    if lower.endswith((".nii", ".nii.gz")) or data[:2] == b"\x1f\x8b" or data[344:348] in (b"n+1\x00", b"ni1\x00"):
        return "nifti"
    if lower.endswith(".dcm"):
        return "dicom"
    return "image"


def window(hu: np.ndarray, level: float = LUNG_WINDOW[0], width: float = LUNG_WINDOW[1]) -> np.ndarray:
    """Map Hounsfield units to [0, 1] through a display window."""
    low = level - width / 2
    return np.clip((hu.astype(np.float32) - low) / width, 0.0, 1.0)


def _check_shape(name: str, arr: np.ndarray) -> np.ndarray:
    if arr.ndim != 2:
        raise ImageReadError(name, f"expected a 2-D slice, got shape {arr.shape}")
    h, w = arr.shape
    if min(h, w) < MIN_SIDE:
        raise ImageReadError(name, f"image is {w}x{h} pixels; a CT slice needs at least {MIN_SIDE} a side")
    if not np.isfinite(arr).all():
        raise ImageReadError(name, "image holds NaN or infinite values")
    return arr


def _from_pil(name: str, data: bytes) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS
        try:
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageReadError(name, f"image is {w}x{h} pixels, over the {MAX_PIXELS}-pixel limit")
            img.load()
        except ImageReadError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageReadError(name, f"image too large ({exc})") from None
        except Exception as exc:  # PIL raises many types for broken files
            raise ImageReadError(name, f"not a readable image ({type(exc).__name__}: {exc})") from None
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        scale = 65535.0 if arr.max() > 255 or mode.startswith("I;16") else 255.0
        return _check_shape(name, arr / scale)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        return _check_shape(name, (arr - lo) / (hi - lo) if hi > lo else arr * 0)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        # Composite on black: transparent pixels are outside the body.
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(bg, img)
    arr = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    return _check_shape(name, arr)


def _from_dicom(name: str, data: bytes) -> np.ndarray:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except InvalidDicomError as exc:
        raise ImageReadError(name, f"not a DICOM file ({exc})") from None
    except Exception as exc:
        raise ImageReadError(name, f"broken DICOM file ({type(exc).__name__}: {exc})") from None
    if "PixelData" not in ds:
        raise ImageReadError(name, "DICOM file has no pixel data")
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        raise ImageReadError(name, f"DICOM pixel data cannot be decoded ({type(exc).__name__}: {exc})") from None
    if pixels.ndim == 3 and getattr(ds, "SamplesPerPixel", 1) == 1:
        pixels = pixels[pixels.shape[0] // 2]  # multi-frame: the middle frame
    if pixels.ndim != 2:
        raise ImageReadError(name, f"DICOM pixel array has shape {pixels.shape}; expected one grey slice")
    from pydicom.pixels import apply_modality_lut

    hu = apply_modality_lut(pixels, ds).astype(np.float32)
    return _check_shape(name, window(hu))


def nifti_slice_count(data: bytes, name: str = "volume.nii") -> int:
    """Number of axial slices in a NIfTI volume (for the dashboard's slice picker)."""
    return _nifti_volume(name, data).shape[2]


def _nifti_volume(name: str, data: bytes) -> np.ndarray:
    import nibabel as nib

    try:
        if data[:2] == b"\x1f\x8b":
            import gzip

            data = gzip.decompress(data)
        img = nib.Nifti1Image.from_bytes(data)
        img = nib.as_closest_canonical(img)
        vol = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:
        raise ImageReadError(name, f"not a readable NIfTI volume ({type(exc).__name__}: {exc})") from None
    if vol.ndim == 4 and vol.shape[3] == 1:
        vol = vol[..., 0]
    if vol.ndim == 2:
        vol = vol[..., None]
    if vol.ndim != 3:
        raise ImageReadError(name, f"NIfTI volume has shape {vol.shape}; expected 3-D (x, y, slices)")
    return vol


def _from_nifti(name: str, data: bytes, slice_index: int | None) -> np.ndarray:
    vol = _nifti_volume(name, data)
    n = vol.shape[2]
    k = n // 2 if slice_index is None else slice_index
    if not 0 <= k < n:
        raise ImageReadError(name, f"slice {k} requested but the volume has {n} slices")
    # Canonical RAS: rotate so that anterior is up, as radiologists view an axial slice.
    sl = np.rot90(vol[:, :, k]).copy()
    if not np.isfinite(sl).all():
        raise ImageReadError(name, "NIfTI slice holds NaN or infinite values")
    # NIfTI CT volumes store Hounsfield units; anything already in [0, 1] or [0, 255] is shown as is.
    if sl.min() < -100:
        return _check_shape(name, window(sl))
    hi = float(sl.max())
    return _check_shape(name, sl / hi if hi > 1 else sl)


def read_slice_bytes(data: bytes, name: str = "<upload>", slice_index: int | None = None) -> np.ndarray:
    """Decode bytes of any supported format to a (H, W) float32 image in [0, 1]."""
    if not data:
        raise ImageReadError(name, "file is empty (0 bytes)")
    fmt = sniff_format(data, name)
    if fmt == "dicom":
        return _from_dicom(name, data)
    if fmt == "nifti":
        return _from_nifti(name, data, slice_index)
    return _from_pil(name, data)


def read_slice(path: str | Path, slice_index: int | None = None) -> np.ndarray:
    """Read a slice file of any supported format to a (H, W) float32 image in [0, 1]."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(str(path), f"cannot open ({exc.strerror or exc})") from None
    return read_slice_bytes(data, str(path), slice_index)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a label mask as integer labels (0 background); binary 0/255 masks become 0/1."""
    path = Path(path)
    try:
        img = Image.open(path)
        img.load()
    except Exception as exc:
        raise ImageReadError(str(path), f"not a readable mask ({type(exc).__name__}: {exc})") from None
    arr = np.asarray(img if img.mode == "P" else img.convert("L"))
    if img.mode != "P":
        arr = (arr > 127).astype(np.uint8)
    return arr.astype(np.uint8)
