"""Read any slice a user can hand us into one float32 grey image in [0, 1].

One entry point, `read_slice`, for every later use (training data, prediction, dashboard upload):
PNG/JPEG/WebP/BMP/TIFF by content (COVID-CT has JPEG data in files named .png), DICOM through pydicom
(modality LUT to Hounsfield units, then the lung window W1500/L-600; an axial slice turned to the radiological
view by its Image Orientation (Patient), core.data.dicom_place), NIfTI through nibabel (canonical orientation,
one axial slice). Every failure is an `ImageReadError` naming the file.

A DICOM file whose pixels cannot be CT numbers (colour, or 8 bits or fewer: a secondary capture, a key image as
hospitals send them) holds a picture of a slice, already windowed: it reads as its PNG would (grey, or colour by
luminance, MONOCHROME1 turned round), never through the lung window, which would turn it white.

16-bit PNG/TIFF and NIfTI carry no modality, but CT exported that way keeps its CT numbers, in Hounsfield units
(signed) or as scanners store them (HU + 1024, unsigned 12-bit): a slice that reads as a chest CT's numbers
(`ct_numbers`) goes through the same lung window as DICOM; other data keeps a plain scaling to [0, 1].
`slice_hu` gives such a slice (DICOM CT, NIfTI, 16-bit CT numbers) in HU before its window, so that another window
can be made of it; a picture of a slice has none.

Compressed DICOM, as hospitals export it, is decoded by pydicom's plugins (requirements.txt): RLE natively,
JPEG Lossless/JPEG-LS/JPEG baseline and extended by pylibjpeg-libjpeg, JPEG 2000 by pylibjpeg-openjpeg.
A transfer syntax none of them reads is refused, by name and UID, before any decoding. A series of
slices, or a NIfTI file, read as one volume: core/data/series.py.
"""
from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.data.dicom_place import frame_field, frame_orientation, radiological

# A CT slice is at most a few thousand pixels a side; anything bigger is a decompression bomb.
MAX_PIXELS = 8192 * 8192
# A CT volume is at most a few hundred MiB; a .nii.gz that inflates past this is a gzip bomb.
MAX_NIFTI_BYTES = 1 << 30
# Multi-frame DICOM is decoded one frame at a time, but the frame count still bounds the work.
MAX_FRAMES = 4096
MIN_SIDE = 16
LUNG_WINDOW = (-600.0, 1500.0)  # level, width in Hounsfield units
CT_STORED_OFFSET = 1024.0  # stored value = HU + 1024: the rescale intercept of -1024 nearly every CT scanner writes
CT_MAX_STORED = 4095.0  # CT numbers fill 12 bits: stored 0..4095, HU -1024..3071
CT_METAL_SHARE = 0.01  # metal (a wire, a lead, a clip) may pass 12 bits on an extended CT scale: on under 1% of a slice
CT_MIN_HU = -3100.0  # below the padding value outside a scanner's field of view (-3024 or -2048)
CT_AIR_HU, CT_AIR_SHARE = -800.0, 0.05  # a chest slice is at least 5% air (outside the body, the lungs)
CT_TISSUE_PEAK_HU = (-150.0, 100.0)  # the tallest peak of what is denser than -500 HU: fat, muscle, blood
PICTURE_BITS = 8  # CT numbers need 12 bits: DICOM pixels of 8 bits or fewer are a picture of a slice, windowed
LUMINANCE = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601-2, Pillow's weights for "L"

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_GZIP_MAGIC = b"\x1f\x8b"
# A DICOM dataset written without its Part 10 header (no preamble, no file meta), as old PACS and CD exporters do,
# opens on an element of group 0008 (identification), little endian, its element number under 0x0100
_RAW_DICOM_GROUP = b"\x08\x00"
# Only the formats we document: Pillow's other plugins (EPS runs Ghostscript, say) are no business of ours.
_PIL_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")  # WebP: data packs (core/data/pack.py)


def printable(text: str) -> str:
    """A file name safe on one line: a name may hold any character, a newline included."""
    return "".join(c if c.isprintable() else "?" for c in text)


class ImageReadError(ValueError):
    """A slice could not be read; the message, one line, names the file and the problem."""

    def __init__(self, name: str, problem: str):
        name, problem = printable(str(name)), printable(str(problem))
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
    if (lower.endswith((".nii", ".nii.gz")) or data[:2] == _GZIP_MAGIC
            or data[344:348] in (b"n+1\x00", b"ni1\x00") or data[4:8] == b"n+2\x00"):
        return "nifti"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":  # content before the name (a data pack's COVID-CT-MD slices)
        return "image"
    if lower.endswith(".dcm") or (data[:2] == _RAW_DICOM_GROUP and data[3:4] == b"\x00"):
        return "dicom"
    return "image"


def window(hu: np.ndarray, level: float = LUNG_WINDOW[0], width: float = LUNG_WINDOW[1]) -> np.ndarray:
    """Map Hounsfield units to [0, 1] through a display window."""
    low = level - width / 2
    return np.clip((hu.astype(np.float32) - low) / width, 0.0, 1.0)


def ct_numbers(values: np.ndarray) -> np.ndarray | None:
    """`values` in Hounsfield units if they are a chest CT slice's numbers, in HU or stored (HU + 1024); else None.

    Read as CT numbers only when the slice looks like one in HU: air on at least CT_AIR_SHARE of it, and the
    tallest peak of what is denser than -500 HU where fat and soft tissue lie. A windowed image saved in 16 bits
    fails this (its soft tissue is white), as does a 16-bit photograph. The numbers fill 12 bits but for metal, which
    an extended CT scale stores beyond them on a few pixels (CT_METAL_SHARE)."""
    lo = float(values.min())
    twelve_bits = float(np.mean(values > CT_MAX_STORED)) <= CT_METAL_SHARE
    if 0 <= lo and twelve_bits:
        hu = values.astype(np.float32) - CT_STORED_OFFSET
    elif CT_MIN_HU <= lo < CT_AIR_HU and twelve_bits:
        hu = values.astype(np.float32)
    else:
        return None
    dense = hu[hu > -500]
    if (hu <= CT_AIR_HU).mean() < CT_AIR_SHARE or dense.size < CT_AIR_SHARE * hu.size:
        return None
    counts, edges = np.histogram(dense, bins=np.arange(-500.0, CT_MAX_STORED + 25, 25))
    peak = edges[int(np.argmax(counts))] + 12.5
    return hu if CT_TISSUE_PEAK_HU[0] <= peak <= CT_TISSUE_PEAK_HU[1] else None


def _problem(exc: BaseException) -> str:
    """One line for an exception from a library: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _check_shape(name: str, arr: np.ndarray) -> np.ndarray:
    if arr.ndim != 2:
        raise ImageReadError(name, f"expected a 2-D slice, got shape {arr.shape}")
    h, w = arr.shape
    if min(h, w) < MIN_SIDE:
        raise ImageReadError(name, f"image is {w}x{h} pixels; a CT slice needs at least {MIN_SIDE} a side")
    if not np.isfinite(arr).all():
        raise ImageReadError(name, "image holds NaN or infinite values")
    return arr


def _check_pixels(name: str, w: int, h: int) -> None:
    if w * h > MAX_PIXELS:
        raise ImageReadError(name, f"image is {w}x{h} pixels, over the {MAX_PIXELS}-pixel limit "
                                   "(refused as a possible decompression bomb)")


def _open_pil(name: str, data: bytes) -> Image.Image:
    """Open and decode with Pillow; the size is checked from the header, before any pixel is decoded."""
    try:
        img = Image.open(io.BytesIO(data), formats=_PIL_FORMATS)
        _check_pixels(name, *img.size)
        img.load()
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard (at 2x its limit) fires inside open(), before our check can.
        size = str(exc).split(",")[0]  # "Image size (N pixels) exceeds limit of M pixels"
        raise ImageReadError(name, f"image too large ({size}); refused as a possible decompression bomb") from None
    except UnidentifiedImageError:
        raise ImageReadError(name, "not a PNG, JPEG, WebP, BMP, TIFF, DICOM or NIfTI file") from None
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, struct.error...) for broken files
        raise ImageReadError(name, f"not a readable image ({_problem(exc)})") from None
    return img


def _pil_hu(img: Image.Image) -> np.ndarray | None:
    """A 16-bit or float image's values in HU if they read as a chest CT's numbers (`ct_numbers`), else None."""
    if not (img.mode.startswith("I") or img.mode == "F"):
        return None  # 8 bits or colour: a picture, already windowed
    arr = np.asarray(img, dtype=np.float32)
    return ct_numbers(arr) if np.isfinite(arr).all() else None


def _pil_grey(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        if not np.isfinite(arr).all():
            return arr  # _check_shape names the problem
        hu = ct_numbers(arr)
        if hu is not None:
            return window(hu)
        lo, hi = float(arr.min()), float(arr.max())
        if mode != "F" and lo >= 0 and hi <= 65535:
            return arr / 65535.0  # 16-bit data (Pillow widens it to 32 bits for some PNG/TIFF)
        # Signed or float data has no fixed scale: stretch what is there.
        return (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        # Composite on black: transparent pixels are outside the body.
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(bg, img)
    return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


def _from_pil(name: str, data: bytes) -> np.ndarray:
    img = _open_pil(name, data)
    try:
        arr = _pil_grey(img)
    except Exception as exc:  # an odd mode Pillow cannot convert to grey
        raise ImageReadError(name, f"image mode {img.mode} cannot be made grey ({_problem(exc)})") from None
    return _check_shape(name, arr)


def _transfer_syntax(uid) -> str:
    """A transfer syntax by name and UID, for messages."""
    from pydicom.uid import UID

    uid = UID(str(uid))
    return f"'{uid.name}' ({uid})" if uid.name != str(uid) else f"{uid} (an unknown UID)"


def _check_decodable(name: str, ds) -> None:
    """Refuse, before decoding, pixel data that no installed decoder reads (pydicom has none for the
    syntax, or its plugins, pylibjpeg-libjpeg/-openjpeg, are missing)."""
    from pydicom.pixels import get_decoder

    syntax = getattr(ds, "file_meta", None) and ds.file_meta.get("TransferSyntaxUID")
    if "PixelData" not in ds or not syntax:
        return  # float pixel data is never compressed; without a syntax, decoding names the problem
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        needs = ""
    else:
        if decoder.is_available:
            return
        missing = [line for deps in decoder.missing_dependencies for line in str(deps).splitlines()[:1]]
        needs = f" (missing: {missing[0]})" if missing else ""
    raise ImageReadError(name, f"DICOM transfer syntax {_transfer_syntax(syntax)} is not supported: "
                               f"no installed decoder reads it{needs}")


def dicom_dataset(name: str, data: bytes):
    """Parse a DICOM file and check, before any pixel is decoded, that it holds one decodable grey image
    (pixel data, a sane size, 1 to MAX_FRAMES frames, grey or RGB, a supported transfer syntax)."""
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:
        raise ImageReadError(name, f"broken DICOM file ({_problem(exc)})") from None
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        if data[128:132] != b"DICM" and not any(tag in ds for tag in ("SOPClassUID", "Modality", "Rows")):
            raise ImageReadError(name, "not a DICOM file (no DICOM preamble, and no DICOM header could be read)")
        raise ImageReadError(name, "DICOM file has no pixel data")
    _set_syntax(ds)
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames") or 1)
        samples = int(ds.get("SamplesPerPixel") or 1)
    except Exception as exc:
        raise ImageReadError(name, f"DICOM header has no valid image size ({_problem(exc)})") from None
    # Checked from the header before decoding: a compressed frame can declare any size.
    _check_pixels(name, cols, rows)
    if not 1 <= frames <= MAX_FRAMES:
        raise ImageReadError(name, f"DICOM file declares {frames} frames; expected 1 to {MAX_FRAMES}")
    photometric = _photometric(ds)
    if samples not in (1, 3) or photometric == "PALETTE COLOR":
        raise ImageReadError(name, f"DICOM holds a {photometric or 'colour'} image ({samples} samples per pixel); "
                                   "expected a grey CT slice, or a grey or RGB picture of one")
    _check_rescale(name, ds)
    _check_decodable(name, ds)
    return ds


def _check_rescale(name: str, ds) -> None:
    """A top-level Rescale Slope or Intercept must be one number: an empty or multi-valued one cannot give HU."""
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        if keyword not in ds:
            continue
        value = ds[keyword].value
        try:
            float(value)
        except (TypeError, ValueError):
            said = "empty" if value is None or str(value).strip() == "" else repr(str(value))
            raise ImageReadError(name, f"DICOM {ds[keyword].name} is {said}; expected one number") from None


def _set_syntax(ds) -> None:
    """A dataset without file meta (no Part 10 header) decodes in the encoding it was parsed in: say so, as its
    Transfer Syntax UID, where its pixels are stored natively (a compressed one always has file meta)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID"):
        return
    implicit, little = ds.original_encoding
    if implicit is None:
        return  # nothing was parsed in an encoding: decoding names the problem
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                              ExplicitVRLittleEndian if little else ExplicitVRBigEndian)


def _photometric(ds) -> str:
    return str(ds.get("PhotometricInterpretation") or "").strip().upper()


def _rescale(ds, k: int) -> tuple[float, float] | None:
    """(slope, intercept) of frame k in an enhanced file's functional groups (Pixel Value Transformation), which
    keeps them there, not at the top level where a classic file (and pydicom's apply_modality_lut) has them."""
    slope = frame_field(ds, k, "PixelValueTransformationSequence", "RescaleSlope")
    intercept = frame_field(ds, k, "PixelValueTransformationSequence", "RescaleIntercept")
    return None if slope is None or intercept is None else (float(slope), float(intercept))


def dicom_frame(name: str, ds, k: int | None = None, shown_in: tuple[float, float] = LUNG_WINDOW) -> np.ndarray:
    """Frame k (default: the middle one) of a parsed DICOM dataset (`dicom_dataset`) in Hounsfield units through
    the lung window (`shown_in`: another (level, width)), [0, 1] (a picture of a slice: as its PNG reads), an axial
    slice in the radiological view."""
    k, pixels, hu = _decoded(name, ds, k)
    if hu is None:
        image = _check_shape(name, _picture_grey(ds, pixels))
    else:  # checked before windowing: the window's clip would hide an infinite value
        image = window(_check_shape(name, hu), *shown_in)
    return radiological(image, frame_orientation(ds, k))


def dicom_hu(name: str, ds, k: int | None = None) -> np.ndarray | None:
    """Frame k (default: the middle one) in Hounsfield units, in the radiological view; None when the file holds a
    picture of a slice, not CT numbers (no other window can be made of it)."""
    k, _, hu = _decoded(name, ds, k)
    return None if hu is None else radiological(_check_shape(name, hu), frame_orientation(ds, k))


def _decoded(name: str, ds, k: int | None) -> tuple[int, np.ndarray, np.ndarray | None]:
    """(the frame's index, its pixels as stored, in HU or None for a picture of a slice)."""
    from pydicom.pixels import apply_modality_lut, pixel_array

    frames = int(ds.get("NumberOfFrames") or 1)
    k = frames // 2 if k is None else k
    if not 0 <= k < frames:
        raise ImageReadError(name, f"frame {k} requested but the DICOM file has {frames} frames")
    try:
        pixels = pixel_array(ds, index=k if frames > 1 else None)
        hu = None if _is_picture(ds) else _hounsfield(ds, k, pixels, apply_modality_lut)
    except Exception as exc:  # truncated or corrupt data, a decoder's own refusal...
        raise ImageReadError(name, f"DICOM pixel data cannot be decoded ({_problem(exc)})") from None
    return k, pixels, hu


def _is_picture(ds) -> bool:
    """Colour, or 8 bits or fewer: a picture of a slice (a secondary capture, a key image), not CT numbers."""
    return int(ds.get("SamplesPerPixel") or 1) == 3 or int(ds.get("BitsStored") or 16) <= PICTURE_BITS


def _hounsfield(ds, k: int, pixels: np.ndarray, apply_modality_lut) -> np.ndarray | None:
    """Frame k in HU by its modality LUT: the top level's (a classic file), else its functional groups' (Enhanced
    CT); with neither, its values if they read as a chest CT's numbers (`ct_numbers`, as a 16-bit PNG's); else None."""
    if "ModalityLUTSequence" in ds or ("RescaleSlope" in ds and "RescaleIntercept" in ds):
        return apply_modality_lut(pixels, ds).astype(np.float32)
    rescale = _rescale(ds, k)
    if rescale is not None:
        return (pixels * rescale[0] + rescale[1]).astype(np.float32)
    return ct_numbers(pixels.astype(np.float32))


def _picture_grey(ds, pixels: np.ndarray) -> np.ndarray:
    """A picture's pixels as grey in [0, 1], as its PNG reads: colour by luminance, scaled by the bits stored,
    MONOCHROME1 (where 0 is white) turned round."""
    values = pixels.astype(np.float32)
    if values.ndim == 3:
        values = values @ LUMINANCE
    grey = values / float(2 ** int(ds.get("BitsStored") or 8) - 1)
    if grey.min() < 0 or grey.max() > 1:  # signed or float data has no fixed scale: stretch what is there
        lo, hi = float(values.min()), float(values.max())
        grey = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    return 1.0 - grey if _photometric(ds) == "MONOCHROME1" else grey


def _from_dicom(name: str, data: bytes, slice_index: int | None) -> np.ndarray:
    return dicom_frame(name, dicom_dataset(name, data), slice_index)


def _gunzip(name: str, data: bytes) -> bytes:
    """Inflate gzip data, refusing to go past MAX_NIFTI_BYTES (a gzip bomb is tiny on disk)."""
    out: list[bytes] = []
    total = 0
    while data[:2] == _GZIP_MAGIC:  # a file may hold several gzip members
        inflater = zlib.decompressobj(wbits=31)
        try:
            chunk = inflater.decompress(data, MAX_NIFTI_BYTES + 1 - total)
        except zlib.error as exc:
            raise ImageReadError(name, f"broken gzip data ({exc})") from None
        total += len(chunk)
        if total > MAX_NIFTI_BYTES:
            raise ImageReadError(name, f"gzip data inflates to over {MAX_NIFTI_BYTES >> 20} MiB; refused")
        if not inflater.eof:
            raise ImageReadError(name, "gzip data is truncated")
        out.append(chunk)
        data = inflater.unused_data
    return b"".join(out)


def open_nifti(name: str, data: bytes):
    """The NIfTI image with only its header parsed; the voxels stay on the (in-memory) file."""
    import nibabel as nib

    if data[:2] == _GZIP_MAGIC:
        data = _gunzip(name, data)
        if data[128:132] == b"DICM":
            raise ImageReadError(name, "a gzip-compressed DICOM file: decompress it (gunzip) and give the DICOM file")
    try:
        # sizeof_hdr is 348 for NIfTI-1 and 540 for NIfTI-2, in either byte order.
        nifti2 = len(data) >= 4 and 540 in (int.from_bytes(data[:4], "little"), int.from_bytes(data[:4], "big"))
        img = (nib.Nifti2Image if nifti2 else nib.Nifti1Image).from_bytes(data)
        shape = tuple(int(n) for n in img.shape)
    except Exception as exc:
        raise ImageReadError(name, f"not a readable NIfTI volume ({_problem(exc)})") from None
    if len(shape) == 4 and shape[3] != 1:
        raise ImageReadError(name, f"NIfTI file holds {shape[3]} volumes (shape {shape}); "
                                   "expected one 3-D volume")
    if len(shape) not in (2, 3, 4) or min(shape) < 1:
        raise ImageReadError(name, f"NIfTI volume has shape {shape}; expected 3-D (x, y, slices)")
    return img


def nifti_axes(img) -> tuple[int, int, np.ndarray]:
    """The stored axis that runs foot to head, whether it is flipped, and the orientation of the rest."""
    from nibabel.orientations import io_orientation

    ornt = io_orientation(img.affine)  # row i: (canonical RAS axis, +1/-1) of stored axis i
    if np.isnan(ornt).any():  # degenerate affine: trust the stored axis order
        ornt = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)
    axis = int(np.flatnonzero(ornt[:, 0] == 2)[0])
    return axis, int(ornt[axis, 1]), np.delete(ornt, axis, axis=0)


def dicom_frame_count(data: bytes, name: str = "slice.dcm") -> int:
    """Frames of a DICOM file (1: a file of one slice), from its header (the dashboard's frame picker)."""
    return int(dicom_dataset(name, data).get("NumberOfFrames") or 1)


def nifti_slice_count(data: bytes, name: str = "volume.nii") -> int:
    """Number of axial slices in a NIfTI volume (for the dashboard's slice picker); reads the header only."""
    img = open_nifti(name, data)
    axis, _, _ = nifti_axes(img)
    return (tuple(img.shape) + (1,))[axis]


def nifti_slice(img, name: str, slice_index: int | None) -> np.ndarray:
    """Axial slice `slice_index` (counted foot to head; default the middle) of an image from open_nifti, in
    the radiological view, in [0, 1]."""
    sl = _nifti_values(img, name, slice_index)
    # NIfTI has no modality: a slice of CT numbers (`_nifti_hu`) is windowed; otherwise [0, 1] is kept,
    # non-negative data is divided by its maximum, and the rest stretched.
    hu = _nifti_hu(sl)
    lo, hi = float(sl.min()), float(sl.max())
    if hu is not None:
        sl = window(hu)
    elif lo < 0:
        sl = (sl - lo) / (hi - lo)
    elif hi > 1:
        sl = sl / hi
    return _check_shape(name, sl)


def _nifti_hu(values: np.ndarray) -> np.ndarray | None:
    """A NIfTI slice's values in HU, or None: CT stores Hounsfield units (a slice that goes below -100 is taken for
    them, air being ~ -1000), or stored CT numbers (`ct_numbers`)."""
    lo = float(values.min())
    if lo < -100:
        return values
    return ct_numbers(values) if lo >= 0 else None


def _nifti_values(img, name: str, slice_index: int | None) -> np.ndarray:
    """Axial slice `slice_index` of an image from open_nifti as stored (float32), in the radiological view."""
    from nibabel.orientations import apply_orientation

    shape = (tuple(int(n) for n in img.shape) + (1,))[:3]
    axis, flip, rest = nifti_axes(img)
    n = shape[axis]
    k = n // 2 if slice_index is None else slice_index
    if not 0 <= k < n:
        raise ImageReadError(name, f"slice {k} requested but the volume has {n} slices")
    w, h = (shape[i] for i in range(3) if i != axis)
    _check_pixels(name, w, h)
    # Read just the one slice off the file (a volume can be far larger than a slice), as canonical RAS does.
    index: list = [slice(None)] * len(img.shape)
    if len(img.shape) == 4:
        index[3] = 0
    try:
        if len(img.shape) == 2:
            vol = np.asarray(img.dataobj, dtype=np.float32)[:, :, None]
            index.append(slice(None))
        else:
            vol = img.dataobj
        index[axis] = k if flip > 0 else n - 1 - k
        sl = np.asarray(vol[tuple(index)], dtype=np.float32)
        sl = apply_orientation(sl, rest)  # now (x: left->right, y: posterior->anterior)
    except Exception as exc:  # short voxel data, an unsupported data type...
        raise ImageReadError(name, f"NIfTI voxel data cannot be read ({_problem(exc)})") from None
    if not np.isfinite(sl).all():
        raise ImageReadError(name, f"NIfTI slice {k} holds NaN or infinite values")
    # Radiological view, as DICOM and the COVID-CT images show it: anterior up, patient's right on the left.
    return np.ascontiguousarray(sl[::-1, ::-1].T)


def read_slice_bytes(data: bytes, name: str = "<upload>", slice_index: int | None = None) -> np.ndarray:
    """Decode bytes of any supported format to a (H, W) float32 image in [0, 1].

    slice_index picks the axial slice of a NIfTI volume or the frame of a multi-frame DICOM (default: middle).
    """
    if not data:
        raise ImageReadError(name, "file is empty (0 bytes)")
    data = bytes(data)
    fmt = sniff_format(data, name)
    if fmt == "dicom":
        return _from_dicom(name, data, slice_index)
    if fmt == "nifti":
        return nifti_slice(open_nifti(name, data), name, slice_index)
    return _from_pil(name, data)


def slice_hu(data: bytes, name: str = "<upload>", slice_index: int | None = None) -> np.ndarray | None:
    """The slice `read_slice_bytes` reads, in Hounsfield units before its lung window (radiological view), so that it
    can be shown in another window: DICOM CT, NIfTI, a 16-bit PNG or TIFF of CT numbers. None when the file holds no
    CT numbers (8-bit or colour, a DICOM picture of a slice, 16-bit data that does not read as a CT's)."""
    if not data:
        raise ImageReadError(name, "file is empty (0 bytes)")
    data = bytes(data)
    fmt = sniff_format(data, name)
    if fmt == "dicom":
        return dicom_hu(name, dicom_dataset(name, data), slice_index)
    if fmt == "nifti":
        hu = _nifti_hu(_nifti_values(open_nifti(name, data), name, slice_index))
    else:
        hu = _pil_hu(_open_pil(name, data))
    return None if hu is None else _check_shape(name, hu)


def read_slice_with_hu(data: bytes, name: str = "<upload>", slice_index: int | None = None
                       ) -> tuple[np.ndarray, np.ndarray | None]:
    """(`read_slice_bytes`, `slice_hu`) of one file, decoded once where it holds CT numbers: the slice as read is
    their lung window."""
    hu = slice_hu(data, name, slice_index)
    return (window(hu), hu) if hu is not None else (read_slice_bytes(data, name, slice_index), None)


def read_bytes(path: Path) -> bytes:
    """A file's bytes; an unreadable or empty file is an ImageReadError naming it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(str(path), f"cannot open ({exc.strerror or exc})") from None
    if not data:
        raise ImageReadError(str(path), "file is empty (0 bytes)")
    return data


def read_slice(path: str | Path, slice_index: int | None = None) -> np.ndarray:
    """Read a slice file of any supported format to a (H, W) float32 image in [0, 1]."""
    path = Path(path)
    return read_slice_bytes(read_bytes(path), str(path), slice_index)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a label mask as uint8 labels (0 background).

    Palette masks keep their indices as labels (COVID-SemiSeg multi-class: 0, 1, 2); grey masks that
    already hold small labels (all values < 128, e.g. 0/1) keep them; others (0/255, or JPEG noise
    around those) are thresholded to 0/1.
    """
    path = Path(path)
    name = str(path)
    img = _open_pil(name, read_bytes(path))
    try:
        if img.mode == "P":
            arr = np.asarray(img)
        else:
            arr = np.asarray(img.convert("L"))
            if arr.max() >= 128:
                arr = arr > 127
        arr = arr.astype(np.uint8)
    except Exception as exc:
        raise ImageReadError(name, f"mask mode {img.mode} cannot be read as labels ({_problem(exc)})") from None
    if arr.ndim != 2:
        raise ImageReadError(name, f"expected a 2-D mask, got shape {arr.shape}")
    return arr


def check_mask_shape(mask: np.ndarray, image_shape: tuple[int, ...], name: str) -> np.ndarray:
    """Refuse a mask whose size differs from its image's (a mis-paired or resized file); return the mask."""
    if tuple(mask.shape) != tuple(image_shape[:2]):
        mh, mw = (tuple(mask.shape) + (0, 0))[:2]
        ih, iw = (tuple(image_shape) + (0, 0))[:2]
        raise ImageReadError(name, f"mask is {mw}x{mh} pixels but its image is {iw}x{ih}")
    return mask
