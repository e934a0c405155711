"""Slice readers: every bad input is an ImageReadError naming the file; good inputs decode right.

The malformed corpus is built here in tmp_path (no data files in the repository), small and fast.
"""
from __future__ import annotations

import gzip
import io
import random
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    MPEG2MPML,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from core.data import imaging
from core.data.imaging import (
    ImageReadError,
    check_mask_shape,
    nifti_slice_count,
    read_mask,
    read_slice,
    read_slice_bytes,
    sniff_format,
    window,
)
from core.data.phantom import make_phantom

# ---------------------------------------------------------------- builders


def grad(h: int = 64, w: int = 64) -> np.ndarray:
    """A uint8 test card: a horizontal ramp plus a vertical one, so that flips and transposes show."""
    y, x = np.mgrid[0:h, 0:w]
    return ((x * 3 + y) % 256).astype(np.uint8)


def pil_bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def noise(h: int = 64, w: int = 64) -> Image.Image:
    """Incompressible pixels, so that a cut lands inside the pixel data (a ramp PNG is ~100 bytes)."""
    return Image.fromarray(np.random.default_rng(3).integers(0, 256, (h, w), dtype=np.uint8))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(w: int, h: int) -> bytes:
    """A PNG whose header declares w x h 8-bit grey pixels, with only a few rows of data: costs nothing to make."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (imaging._PNG_MAGIC + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\0" * (w + 1) * 4)) + png_chunk(b"IEND", b""))


def jpeg_declaring(w: int, h: int) -> bytes:
    """A small valid JPEG with its SOF0 frame size patched to w x h."""
    data = bytearray(pil_bytes(Image.fromarray(grad()), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", h, w)
    return bytes(data)


def ct_dataset(hu: np.ndarray, slope: float = 2.0, intercept: float = -1024.0) -> Dataset:
    """A minimal CT slice: stored = (HU - intercept) / slope as signed 16-bit, as scanners do."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = hu.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = np.round((hu - intercept) / slope).astype("<i2").tobytes()
    return ds


def dicom_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return buf.getvalue()


def ct_phantom(n: int = 32) -> np.ndarray:
    hu = np.full((n, n), -1000.0)
    hu[8:24, 8:24] = -600.0
    return hu


def nifti_bytes(vol: np.ndarray, affine: np.ndarray | None = None, gz: bool = False) -> bytes:
    img = nib.Nifti1Image(vol, np.eye(4) if affine is None else affine)
    data = img.to_bytes()
    return gzip.compress(data, compresslevel=1) if gz else data


# ---------------------------------------------------------------- malformed corpus
# name -> bytes (or None: the builder makes the path itself). Every entry must be refused by read_slice.


def _dicom_no_pixels() -> bytes:
    ds = ct_dataset(ct_phantom())
    del ds.PixelData
    return dicom_bytes(ds)


def _dicom_unknown_syntax() -> bytes:
    ds = ct_dataset(ct_phantom())
    ds.file_meta.TransferSyntaxUID = "1.2.826.0.1.3680043.9.9999.1"  # a private UID no decoder knows
    return dicom_bytes(ds)


def _dicom_mpeg2_syntax() -> bytes:
    ds = ct_dataset(ct_phantom())
    ds.file_meta.TransferSyntaxUID = MPEG2MPML  # a video syntax: pydicom has no decoder for it
    ds.PixelData = encapsulate([bytes(64)])
    return dicom_bytes(ds)


def _dicom_jpeg_syntax_with_garbage() -> bytes:
    ds = ct_dataset(ct_phantom())
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xe0 this is not a JPEG stream at all" * 4])
    return dicom_bytes(ds)


def _dicom_short_pixels() -> bytes:
    ds = ct_dataset(ct_phantom())
    ds.PixelData = ds.PixelData[:100]  # 50 of 1024 pixels
    return dicom_bytes(ds)


def _dicom_huge_declared() -> bytes:
    ds = ct_dataset(ct_phantom())
    ds.Rows = ds.Columns = 60000  # 3.6 G pixels declared, 2 KB present
    return dicom_bytes(ds)


def _dicom_palette() -> bytes:
    ds = ct_dataset(ct_phantom())
    ds.PhotometricInterpretation = "PALETTE COLOR"  # indices into colour tables, no grey to read
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = bytes(32 * 32)
    return dicom_bytes(ds)


def _dicom_two_samples() -> bytes:
    ds = ct_dataset(ct_phantom())
    ds.SamplesPerPixel, ds.PlanarConfiguration = 2, 0
    return dicom_bytes(ds)


def _dicom_inf_slope() -> bytes:
    ds = ct_dataset(ct_phantom())
    ds.RescaleSlope = "1e999"  # parses to inf: the window's clip would hide it
    return dicom_bytes(ds)


def _dicom_rescale(**fields) -> bytes:
    ds = ct_dataset(ct_phantom())
    for keyword, value in fields.items():
        setattr(ds, keyword, value)
    return dicom_bytes(ds)


def _png_bad_crc() -> bytes:
    data = bytearray(pil_bytes(Image.fromarray(grad()), "PNG"))
    i = data.index(b"IDAT") + 10
    data[i:i + 8] = b"\x00" * 8
    return bytes(data)


def _tiff_float_nan() -> bytes:
    arr = np.full((32, 32), np.nan, dtype=np.float32)
    return pil_bytes(Image.fromarray(arr), "TIFF")


def _gif_zero_frames() -> bytes:
    # Header and logical screen descriptor, then the trailer: a GIF with no image in it.
    return b"GIF89a" + struct.pack("<HHBBB", 64, 64, 0, 0, 0) + b";"


CORPUS: dict[str, object] = {
    "empty.png": lambda: b"",
    "truncated.png": lambda: pil_bytes(noise(), "PNG")[:1200],
    "truncated.jpg": lambda: pil_bytes(noise(), "JPEG")[:1600],
    "truncated.bmp": lambda: pil_bytes(noise(), "BMP")[:2000],
    "truncated.tif": lambda: pil_bytes(noise(), "TIFF")[:2000],
    "text.png": lambda: b"this is a text file, not a picture\n" * 10,
    "page.jpg": lambda: b"<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>\n",
    "random.bin": lambda: random.Random(7).randbytes(4096),
    "random.png": lambda: random.Random(8).randbytes(4096),
    "one_pixel.png": lambda: pil_bytes(Image.new("L", (1, 1), 128), "PNG"),
    "thin_8x64.png": lambda: pil_bytes(Image.new("L", (8, 64), 128), "PNG"),
    "bomb_20000.png": lambda: png_declaring(20000, 20000),  # Pillow's own guard fires
    "bomb_9000.png": lambda: png_declaring(9000, 9000),  # under Pillow's guard, over ours
    "bomb_30000.jpg": lambda: jpeg_declaring(30000, 30000),
    "bad_crc.png": _png_bad_crc,
    "float_nan.tif": _tiff_float_nan,
    "zero_frames.gif": _gif_zero_frames,
    "broken.gif": lambda: b"GIF89a\x40\x00\x40\x00\xf7\x00\x00" + bytes(20),
    "preamble_only.dcm": lambda: bytes(128) + b"DICM",
    "no_pixels.dcm": _dicom_no_pixels,
    "unknown_syntax.dcm": _dicom_unknown_syntax,
    "mpeg2_syntax.dcm": _dicom_mpeg2_syntax,
    "jpeg_syntax_garbage.dcm": _dicom_jpeg_syntax_with_garbage,
    "short_pixels.dcm": _dicom_short_pixels,
    "cut_in_half.dcm": lambda: dicom_bytes(ct_dataset(ct_phantom()))[:1000],
    "huge_declared.dcm": _dicom_huge_declared,
    "palette.dcm": _dicom_palette,
    "two_samples.dcm": _dicom_two_samples,
    "inf_slope.dcm": _dicom_inf_slope,
    "text.dcm": lambda: b"not a DICOM file\n",
    "report.dcm": lambda: b"hello, this is a text report\n" * 20,
    "gzipped.dcm.gz": lambda: gzip.compress(dicom_bytes(ct_dataset(ct_phantom()))),
    "empty_slope.dcm": lambda: _dicom_rescale(RescaleSlope=""),
    "two_intercepts.dcm": lambda: _dicom_rescale(RescaleIntercept=["-1024", "0"]),
    "four_d.nii": lambda: nifti_bytes(np.zeros((32, 32, 4, 3), np.float32)),
    "five_d.nii": lambda: nifti_bytes(np.zeros((32, 32, 4, 1, 2), np.float32)),
    "all_nan.nii": lambda: nifti_bytes(np.full((32, 32, 4), np.nan, np.float32)),
    "tiny_4x4.nii": lambda: nifti_bytes(np.zeros((4, 4, 3), np.float32)),
    "short_voxels.nii": lambda: nifti_bytes(np.zeros((32, 32, 4), np.float32))[:352 + 100],
    "gzip_garbage.nii.gz": lambda: b"\x1f\x8b\x08\x00" + random.Random(9).randbytes(500),
    "not_gzip.nii.gz": lambda: b"plain text with a NIfTI name\n",
    "truncated.nii.gz": lambda: nifti_bytes(np.random.default_rng(0).random((32, 32, 4), np.float32), gz=True)[:2000],
    "gzip_of_text.nii.gz": lambda: gzip.compress(b"hello, this is not a volume\n" * 20),
    "random.nii": lambda: random.Random(10).randbytes(2048),
}


def build(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(CORPUS[name]())
    return path


def test_corpus_is_big_enough():
    assert len(CORPUS) >= 25


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_malformed_input_is_refused_with_the_file_named(tmp_path, name):
    path = build(tmp_path, name)
    with pytest.raises(ImageReadError) as info:
        read_slice(path)
    err = info.value
    assert err.name == str(path)
    assert name in str(err)
    assert err.problem and "\n" not in str(err)


@pytest.mark.parametrize("name", sorted(n for n in CORPUS if n not in ("one_pixel.png", "thin_8x64.png",
                                                                      "float_nan.tif")))
def test_malformed_input_is_refused_as_a_mask(tmp_path, name):
    # A tiny or float image is still a readable mask (check_mask_shape catches a size mismatch).
    path = build(tmp_path, name)
    with pytest.raises(ImageReadError, match=name.replace(".", r"\.")):
        read_mask(path)


@pytest.mark.parametrize("name", ["bomb_20000.png", "bomb_9000.png", "bomb_30000.jpg", "huge_declared.dcm"])
def test_bombs_are_refused_before_decoding(tmp_path, name):
    # The files hold a few rows of data only: decoding would fail as "truncated"; a size check names the bomb.
    with pytest.raises(ImageReadError, match="decompression bomb"):
        read_slice(build(tmp_path, name))


def test_specific_messages(tmp_path):
    cases = {
        "empty.png": "empty",
        "no_pixels.dcm": "no pixel data",
        "four_d.nii": "3 volumes",
        "all_nan.nii": "NaN",
        "float_nan.tif": "NaN",
        "one_pixel.png": "1x1",
        "palette.dcm": "a PALETTE COLOR image",
        "two_samples.dcm": "2 samples per pixel",
        "inf_slope.dcm": "infinite",
        "zero_frames.gif": "not a PNG, JPEG",
        "report.dcm": "not a DICOM file",
        "gzipped.dcm.gz": "gzip-compressed DICOM file",
        "empty_slope.dcm": "Rescale Slope is empty; expected one number",
        "two_intercepts.dcm": r"Rescale Intercept is '\[-1024, 0\]'; expected one number",
    }
    for name, text in cases.items():
        with pytest.raises(ImageReadError, match=text):
            read_slice(build(tmp_path, name))


def test_an_error_names_an_odd_file_on_one_line(tmp_path):
    """A file name may hold a newline (a folder from another system, an upload): the error stays one line."""
    path = tmp_path / "IM1\nIM2.dcm"
    path.write_bytes(b"not a DICOM file\n")
    with pytest.raises(ImageReadError) as info:
        read_slice(path)
    assert "\n" not in str(info.value) and str(info.value).startswith(str(tmp_path / "IM1?IM2.dcm"))
    with pytest.raises(ImageReadError) as info:
        read_slice_bytes(b"", "a\rb\tc.png")
    assert str(info.value) == "a?b?c.png: file is empty (0 bytes)"


@pytest.mark.parametrize("implicit", [True, False])
def test_a_dicom_file_without_its_part10_header_reads_as_with_it(implicit):
    """Old PACS and CD exporters write the dataset alone (no preamble, no file meta): read in the encoding it was
    written in, whatever the file's name."""
    import pydicom

    ds = ct_dataset(chest_hu())
    part10 = dicom_bytes(ds)
    del ds.file_meta
    raw = io.BytesIO()
    pydicom.dcmwrite(raw, ds, implicit_vr=implicit, little_endian=True)
    raw = raw.getvalue()
    assert raw[128:132] != b"DICM" and raw[:2] == b"\x08\x00"
    for name in ("slice.dcm", "IM000001"):
        assert imaging.sniff_format(raw, name) == "dicom"
        np.testing.assert_array_equal(read_slice_bytes(raw, name), read_slice_bytes(part10, "part10.dcm"))
    np.testing.assert_array_equal(imaging.slice_hu(raw, "IM000001"), imaging.slice_hu(part10, "part10.dcm"))


def test_metal_past_twelve_bits_keeps_a_16bit_export_in_ct_numbers(tmp_path):
    """An extended CT scale stores metal (a wire, a lead) beyond 3071 HU on a few pixels: the 16-bit PNG of stored
    numbers still reads as its DICOM; a slice mostly past 12 bits is still not CT numbers."""
    hu = chest_hu()
    hu[40:43, 40:43] = 8000.0
    path = tmp_path / "metal.png"
    Image.fromarray((hu + imaging.CT_STORED_OFFSET).astype(np.uint16)).save(path)
    np.testing.assert_allclose(read_slice(path), read_slice_bytes(dicom_bytes(ct_dataset(hu, slope=1.0)), "m.dcm"),
                               atol=1e-6)
    np.testing.assert_allclose(read_slice(path), window(hu), atol=1e-6)
    assert imaging.ct_numbers(hu + 5000) is None


def test_missing_file_and_directory(tmp_path):
    for path in (tmp_path / "missing.png", tmp_path):
        with pytest.raises(ImageReadError, match="cannot open") as info:
            read_slice(path)
        assert str(path) in str(info.value)
        with pytest.raises(ImageReadError):
            read_mask(path)


def test_bytes_entry_names_the_upload():
    with pytest.raises(ImageReadError, match="^scan.dcm: "):
        read_slice_bytes(b"junk", "scan.dcm")
    with pytest.raises(ImageReadError, match="^<upload>: file is empty"):
        read_slice_bytes(b"")


def test_gzip_bomb_is_refused(monkeypatch):
    # Cap lowered so that the bomb is cheap: 4 MiB of zeros inflating past a 1 MiB cap.
    monkeypatch.setattr(imaging, "MAX_NIFTI_BYTES", 1 << 20)
    data = gzip.compress(bytes(4 << 20), compresslevel=1)
    with pytest.raises(ImageReadError, match="inflates to over 1 MiB"):
        read_slice_bytes(data, "bomb.nii.gz")


def test_valid_but_unsupported_formats_are_refused():
    # Only PNG/JPEG/WebP/BMP/TIFF (plus DICOM, NIfTI) are read; Pillow's other plugins are not reached.
    gif = pil_bytes(Image.fromarray(grad()), "GIF")
    with pytest.raises(ImageReadError, match="not a PNG, JPEG, WebP, BMP, TIFF, DICOM or NIfTI file"):
        read_slice_bytes(gif, "scan.gif")


def _mutants():
    rng = random.Random(1234)
    seeds = {
        "png": pil_bytes(noise(32, 32), "PNG"),
        "jpg": pil_bytes(noise(32, 32), "JPEG"),
        "dcm": dicom_bytes(ct_dataset(ct_phantom())),
        "nii": nifti_bytes(np.random.default_rng(1).normal(-500, 300, (24, 24, 3)).astype(np.float32)),
    }
    for ext, data in seeds.items():
        for i in range(12):
            buf = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                buf[rng.randrange(len(buf))] = rng.randrange(256)
            yield f"{ext}-flip{i}", bytes(buf), f"x.{ext}"
        for cut in (1, 8, 64, 200, len(data) // 2, len(data) - 1):
            yield f"{ext}-cut{cut}", data[:cut], f"x.{ext}"


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the invalid values it still reads
@pytest.mark.parametrize("label,data,name", [pytest.param(*m, id=m[0]) for m in _mutants()])
def test_mutated_files_decode_or_raise_image_read_error(label, data, name):
    # Flipped bytes and cuts in real files: either a valid slice or an ImageReadError, nothing else.
    try:
        arr = read_slice_bytes(data, name)
    except ImageReadError as exc:
        assert str(exc).startswith(f"{name}: ")
        return
    assert arr.dtype == np.float32 and arr.ndim == 2
    assert np.isfinite(arr).all() and arr.min() >= 0 and arr.max() <= 1


# ---------------------------------------------------------------- PNG / JPEG / BMP / TIFF


def test_grey_8bit_png(tmp_path):
    arr = grad()
    path = tmp_path / "grey.png"
    Image.fromarray(arr).save(path)
    out = read_slice(path)
    assert out.dtype == np.float32 and out.shape == (64, 64)
    np.testing.assert_allclose(out, arr / 255.0, atol=1e-6)


def test_16bit_png_uses_the_full_16_bit_range(tmp_path):
    arr = np.zeros((32, 32), np.uint16)
    arr[:, 8:16], arr[:, 16:24], arr[:, 24:] = 200, 32768, 65535
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    assert Image.open(path).mode.startswith("I")
    out = read_slice(path)
    np.testing.assert_allclose(out[0, [0, 8, 16, 24]], [0, 200 / 65535, 32768 / 65535, 1.0], atol=1e-6)


def test_dark_16bit_png_is_not_mistaken_for_8bit(tmp_path):
    arr = np.full((32, 32), 255, np.uint16)
    Image.fromarray(arr).save(tmp_path / "dark.png")
    np.testing.assert_allclose(read_slice(tmp_path / "dark.png"), 255 / 65535, atol=1e-6)


def chest_hu(seed: int = 0) -> np.ndarray:
    """A chest CT slice in Hounsfield units, whole numbers within the 12 bits scanners store them in."""
    return np.clip(np.round(make_phantom(seed, covid=True, size=96).hu), -1024, 3071)


@pytest.mark.parametrize("values,ext", [("stored uint16", "png"), ("stored uint16", "tif"), ("HU int16", "tif"),
                                        ("HU float32", "tif")])
def test_a_16bit_ct_export_reads_as_its_dicom(tmp_path, values, ext):
    hu = chest_hu()
    values = {"stored uint16": (hu + imaging.CT_STORED_OFFSET).astype(np.uint16), "HU int16": hu.astype(np.int16),
              "HU float32": hu.astype(np.float32)}[values]
    path = tmp_path / f"slice.{ext}"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode != "L"
    dicom = tmp_path / "slice.dcm"
    dicom.write_bytes(dicom_bytes(ct_dataset(hu, slope=1.0)))
    np.testing.assert_allclose(read_slice(path), read_slice(dicom), atol=1e-6)
    np.testing.assert_allclose(read_slice(path), window(hu), atol=1e-6)


def test_a_windowed_16bit_export_keeps_its_plain_scaling(tmp_path):
    """Soft tissue white, lungs mid-grey: already windowed, so not CT numbers, whatever its bit depth."""
    for top in (4095, 65535):
        values = np.round(window(chest_hu()) * top).astype(np.uint16)
        Image.fromarray(values).save(tmp_path / "windowed.png")
        assert imaging.ct_numbers(values.astype(np.float32)) is None
        np.testing.assert_allclose(read_slice(tmp_path / "windowed.png"), values / 65535.0, atol=1e-6)


def test_ct_numbers_needs_air_and_a_soft_tissue_peak():
    hu = chest_hu()
    assert imaging.ct_numbers(hu) is not None and imaging.ct_numbers(hu + 1024) is not None
    body_only = np.where(hu < -500, 40.0, hu)  # no air: a crop inside the body, or not CT
    assert imaging.ct_numbers(body_only) is None and imaging.ct_numbers(body_only + 1024) is None
    assert imaging.ct_numbers(hu + 300) is None  # its tissue peak lies where no soft tissue does
    assert imaging.ct_numbers(hu + 5000) is None  # past 12 bits


def test_a_nifti_of_stored_ct_numbers_is_windowed():
    hu = chest_hu()
    vol = np.repeat((hu + imaging.CT_STORED_OFFSET).astype(np.uint16)[:, :, None], 3, axis=2)
    out = read_slice_bytes(nifti_bytes(vol), "stored.nii", slice_index=1)
    np.testing.assert_allclose(np.sort(out.ravel()), np.sort(window(hu).ravel()), atol=1e-6)


@pytest.mark.parametrize("kind", ["dicom", "stored png", "HU tif", "HU nifti", "stored nifti"])
def test_slice_hu_gives_the_numbers_the_lung_window_shows(kind):
    """Every file that holds CT numbers gives them back (another window can be made of them), and the product's lung
    window of them is the slice as read."""
    hu = chest_hu()
    stored = (hu + imaging.CT_STORED_OFFSET).astype(np.uint16)
    data = {"dicom": lambda: dicom_bytes(ct_dataset(hu, slope=1.0)),
            "stored png": lambda: pil_bytes(Image.fromarray(stored), "PNG"),
            "HU tif": lambda: pil_bytes(Image.fromarray(hu.astype(np.int16)), "TIFF"),
            "HU nifti": lambda: nifti_bytes(np.repeat(hu.astype(np.float32)[:, :, None], 3, axis=2)),
            "stored nifti": lambda: nifti_bytes(np.repeat(stored[:, :, None], 3, axis=2))}[kind]()
    numbers = imaging.slice_hu(data, kind, 1 if "nifti" in kind else None)
    np.testing.assert_allclose(window(numbers), read_slice_bytes(data, kind, 1 if "nifti" in kind else None),
                               atol=1e-6)
    np.testing.assert_allclose(np.sort(numbers.ravel()), np.sort(hu.ravel()), atol=1e-3)  # NIfTI turns the slice


def test_a_slice_and_its_numbers_read_at_once_equal_each_read_alone():
    hu = chest_hu()
    files = {"ct.dcm": dicom_bytes(ct_dataset(hu, slope=1.0)),
             "stored.png": pil_bytes(Image.fromarray((hu + imaging.CT_STORED_OFFSET).astype(np.uint16)), "PNG"),
             "picture.png": pil_bytes(Image.fromarray(np.round(window(hu) * 255).astype(np.uint8)), "PNG")}
    for name, data in files.items():
        slice01, numbers = imaging.read_slice_with_hu(data, name)
        np.testing.assert_array_equal(slice01, read_slice_bytes(data, name))
        alone = imaging.slice_hu(data, name)
        assert (numbers is None) == (alone is None) == (name == "picture.png")
        if alone is not None:
            np.testing.assert_array_equal(numbers, alone)


def test_slice_hu_is_none_for_a_picture_of_a_slice():
    windowed = window(chest_hu())
    grey = Image.fromarray(np.round(windowed * 255).astype(np.uint8))
    pictures = {"8-bit png": pil_bytes(grey, "PNG"),
                "windowed 16-bit png": pil_bytes(Image.fromarray(np.round(windowed * 4095).astype(np.uint16)), "PNG"),
                "rgb jpeg": pil_bytes(grey.convert("RGB"), "JPEG"),
                "key image dicom": dicom_bytes(picture_dicom(np.round(windowed * 255).astype(np.uint8))),
                "windowed nifti": nifti_bytes(np.repeat(windowed.astype(np.float32)[:, :, None], 3, axis=2))}
    for name, data in pictures.items():
        assert imaging.slice_hu(data, name) is None, name
    with pytest.raises(ImageReadError, match="empty"):
        imaging.slice_hu(b"", "nothing.dcm")


def test_rgb_png(tmp_path):
    arr = np.zeros((32, 32, 3), np.uint8)
    arr[:16] = 100  # grey stays grey
    arr[16:, :, 0] = 255  # pure red: ITU-R 601 luma, as Pillow's "L"
    Image.fromarray(arr).save(tmp_path / "rgb.png")
    out = read_slice(tmp_path / "rgb.png")
    assert out[0, 0] == pytest.approx(100 / 255, abs=1e-6)
    assert out[31, 0] == pytest.approx(76 / 255, abs=1 / 255)


def test_rgba_transparent_is_black(tmp_path):
    arr = np.full((32, 32, 4), 200, np.uint8)
    arr[:, :16, 3] = 0  # transparent but white underneath
    arr[:, 16:, 3] = 255
    Image.fromarray(arr).save(tmp_path / "rgba.png")
    out = read_slice(tmp_path / "rgba.png")
    assert out[:, :16].max() == 0.0
    np.testing.assert_allclose(out[:, 16:], 200 / 255, atol=1e-6)


def _palette_image(transparent: int | None = None) -> Image.Image:
    idx = np.zeros((32, 32), np.uint8)
    idx[:, 16:] = 1
    img = Image.frombytes("P", (32, 32), idx.tobytes())
    img.putpalette([10, 10, 10, 250, 250, 250] + [0, 0, 0] * 254)
    if transparent is not None:
        img.info["transparency"] = transparent
    return img


def test_palette_png(tmp_path):
    _palette_image().save(tmp_path / "pal.png")
    out = read_slice(tmp_path / "pal.png")
    assert out[0, 0] == pytest.approx(10 / 255, abs=1e-6)
    assert out[0, 31] == pytest.approx(250 / 255, abs=1e-6)


def test_palette_png_with_transparency(tmp_path):
    _palette_image(transparent=1).save(tmp_path / "palt.png", transparency=1)
    out = read_slice(tmp_path / "palt.png")
    assert out[0, 0] == pytest.approx(10 / 255, abs=1e-6)
    assert out[:, 16:].max() == 0.0


def test_webp_named_dcm_is_read_by_content(tmp_path):
    arr = grad()  # a data pack keeps COVID-CT-MD's file names and stores WebP pixels (train/pack.py)
    path = tmp_path / "IM0001.dcm"
    Image.fromarray(arr).save(path, "WEBP", lossless=True)
    assert sniff_format(path.read_bytes(), path.name) == "image"
    assert np.array_equal(np.round(read_slice(path) * 255), arr)


def test_jpeg_named_png_is_read_by_content(tmp_path):
    arr = grad()
    path = tmp_path / "really_a_jpeg.png"
    Image.fromarray(arr).save(path, "JPEG", quality=95)
    assert sniff_format(path.read_bytes(), path.name) == "jpeg"
    out = read_slice(path)
    assert out.shape == (64, 64)
    assert np.abs(out - arr / 255.0).mean() < 0.02


@pytest.mark.parametrize("fmt,ext", [("BMP", "bmp"), ("TIFF", "tif")])
def test_bmp_and_tiff(tmp_path, fmt, ext):
    arr = grad()
    Image.fromarray(arr).save(tmp_path / f"s.{ext}", fmt)
    np.testing.assert_allclose(read_slice(tmp_path / f"s.{ext}"), arr / 255.0, atol=1e-6)


# ---------------------------------------------------------------- DICOM


def test_dicom_ct_slice_goes_through_hounsfield_units_and_the_lung_window(tmp_path):
    hu = np.full((32, 32), -600.0)
    hu[:, :8] = -1350.0  # lower edge of W1500/L-600
    hu[:, 24:] = 150.0  # upper edge
    hu[:4, 8:24] = -1000.0
    ds = ct_dataset(hu, slope=2.0, intercept=-1024.0)
    stored = np.frombuffer(ds.PixelData, "<i2").reshape(32, 32)
    assert stored[10, 10] == 212 and stored[10, 0] == -163  # really stored, not HU
    path = tmp_path / "ct.dcm"
    path.write_bytes(dicom_bytes(ds))
    out = read_slice(path)
    assert out.dtype == np.float32 and out.shape == (32, 32)
    assert out[10, 10] == pytest.approx(0.5, abs=1e-6)  # -600 HU
    assert out[10, 0] == pytest.approx(0.0, abs=1e-6)  # -1350 HU
    assert out[10, 30] == pytest.approx(1.0, abs=1e-6)  # +150 HU
    assert out[0, 10] == pytest.approx((-1000 + 1350) / 1500, abs=1e-6)
    np.testing.assert_allclose(out, window(hu), atol=1e-6)


def picture_dicom(pixels: np.ndarray, photometric: str = "MONOCHROME2", bits: int = 8) -> Dataset:
    """A picture of a slice as a hospital sends a key image: a secondary capture, no CT numbers."""
    ds = ct_dataset(np.zeros(pixels.shape[:2]))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.Modality, ds.PhotometricInterpretation = "OT", photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = (8 if bits <= 8 else 16), bits, bits - 1, 0
    del ds.RescaleSlope, ds.RescaleIntercept
    if pixels.ndim == 3:
        ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    ds.PixelData = pixels.astype(np.uint8 if bits <= 8 else "<u2").tobytes()
    return ds


def test_a_dicom_picture_of_a_slice_reads_as_its_png(tmp_path):
    """8-bit grey, MONOCHROME1, RGB (as Pillow makes it grey), with a neutral rescale some exporters write:
    the picture as its PNG reads (was: 8-bit values taken for HU, the lung window made it white)."""
    grey = np.round(window(chest_hu()) * 255).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "slice.png")
    png = read_slice(tmp_path / "slice.png")
    rgb = np.stack([grey, np.roll(grey, 3, axis=1), grey // 2], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    neutral = picture_dicom(grey)
    neutral.RescaleSlope, neutral.RescaleIntercept = 1.0, 0.0
    for ds, expected in [(picture_dicom(grey), png), (picture_dicom(255 - grey, "MONOCHROME1"), png),
                         (neutral, png), (picture_dicom(rgb, "RGB"), read_slice(tmp_path / "colour.png"))]:
        out = read_slice_bytes(dicom_bytes(ds), "key-image.dcm")
        np.testing.assert_allclose(out, expected, atol=1 / 255)
    assert float(png.mean()) < 0.6  # the lungs and the air around the body stay dark


def test_dicom_ct_numbers_without_a_rescale_read_as_a_16bit_png(tmp_path):
    """No Rescale Slope/Intercept anywhere: stored CT numbers (HU + 1024) go through the lung window as with a
    rescale (were: taken for HU, 1024 too bright); a 12-bit windowed picture keeps its plain scaling."""
    hu = chest_hu()
    bare = ct_dataset(hu, slope=1.0)
    del bare.RescaleSlope, bare.RescaleIntercept
    bare.BitsStored, bare.HighBit, bare.PixelRepresentation = 12, 11, 0
    bare.PixelData = (hu + imaging.CT_STORED_OFFSET).astype("<u2").tobytes()
    np.testing.assert_allclose(read_slice_bytes(dicom_bytes(bare), "bare.dcm"), window(hu), atol=1e-6)
    picture = np.round(window(hu) * 4095)
    out = read_slice_bytes(dicom_bytes(picture_dicom(picture, bits=12)), "windowed.dcm")
    np.testing.assert_allclose(out, picture / 4095, atol=1e-6)


def test_dicom_is_found_by_magic_whatever_the_name(tmp_path):
    path = tmp_path / "IM0001"
    path.write_bytes(dicom_bytes(ct_dataset(ct_phantom())))
    assert read_slice(path)[16, 16] == pytest.approx(0.5, abs=1e-6)


def test_multiframe_dicom_picks_a_frame(tmp_path):
    frames = np.stack([np.full((32, 32), v) for v in (-1350.0, -600.0, 150.0)])
    ds = ct_dataset(frames[0], slope=1.0)
    ds.NumberOfFrames = 3
    ds.PixelData = np.round(frames + 1024).astype("<i2").tobytes()
    data = dicom_bytes(ds)
    assert read_slice_bytes(data, "mf.dcm")[0, 0] == pytest.approx(0.5)  # the middle frame
    assert read_slice_bytes(data, "mf.dcm", slice_index=0)[0, 0] == pytest.approx(0.0)
    assert read_slice_bytes(data, "mf.dcm", slice_index=2)[0, 0] == pytest.approx(1.0)
    with pytest.raises(ImageReadError, match="frame 3 requested"):
        read_slice_bytes(data, "mf.dcm", slice_index=3)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_compressed_dicom_reads_as_the_uncompressed_slice(syntax):
    hu = ct_phantom()
    hu[3:6, 4:9] = 150.0
    hu[20, 2] = -1350.0
    plain = read_slice_bytes(dicom_bytes(ct_dataset(hu, slope=1.0)), "plain.dcm")
    ds = ct_dataset(hu, slope=1.0)
    ds.compress(syntax)  # RLE by pydicom itself, JPEG 2000 by pylibjpeg-openjpeg
    assert ds.file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(read_slice_bytes(dicom_bytes(ds), "packed.dcm"), plain)
    np.testing.assert_allclose(plain, window(hu), atol=1e-6)


@pytest.mark.parametrize("syntax", [JPEGLosslessSV1, JPEGLSLossless, JPEGBaseline8Bit, JPEG2000Lossless])
def test_the_decoder_plugins_hospitals_need_are_installed(syntax):
    # COVID-CT-MD is JPEG Lossless SV1; pydicom cannot write it, so the real-data test decodes it
    from pydicom.pixels import get_decoder

    assert get_decoder(syntax).is_available, f"no decoder for {syntax.name}: install requirements.txt"


def test_unsupported_transfer_syntax_is_named_by_name_and_uid(tmp_path):
    path = tmp_path / "video.dcm"
    path.write_bytes(_dicom_mpeg2_syntax())
    with pytest.raises(ImageReadError) as info:
        read_slice(path)
    assert str(info.value) == (f"{path}: DICOM transfer syntax 'MPEG2 Main Profile / Main Level' "
                               f"({MPEG2MPML}) is not supported: no installed decoder reads it")
    with pytest.raises(ImageReadError, match=r"^odd.dcm: DICOM transfer syntax 1\.2\.826\.0\.1\.3680043\.9\.9999\.1 "
                                             r"\(an unknown UID\) is not supported"):
        read_slice_bytes(_dicom_unknown_syntax(), "odd.dcm")


def test_a_missing_plugin_is_named_before_decoding(monkeypatch):
    import pydicom.pixels

    class Unavailable:  # what pydicom's decoder reports without pylibjpeg-openjpeg
        is_available = False
        missing_dependencies = ("pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-openjpeg>=2.0",)

    monkeypatch.setattr(pydicom.pixels, "get_decoder", lambda uid: Unavailable())
    ds = ct_dataset(ct_phantom())
    ds.compress(RLELossless)
    with pytest.raises(ImageReadError, match=r"^j2k.dcm: DICOM transfer syntax 'RLE Lossless' \(1\.2\.840\.10008\.1\.2\.5\) "
                                             r"is not supported: no installed decoder reads it \(missing: pylibjpeg - "):
        read_slice_bytes(dicom_bytes(ds), "j2k.dcm")


# ---------------------------------------------------------------- NIfTI


def _labelled_volume(nx: int = 20, ny: int = 24, nz: int = 5) -> np.ndarray:
    """HU volume where slice k is -1300 + 100k, with a bright marker at the patient's right-anterior corner."""
    vol = np.empty((nx, ny, nz), np.float32)
    for k in range(nz):
        vol[:, :, k] = -1300.0 + 100.0 * k
    vol[-3:, -3:, :] = 150.0  # high x = Right, high y = Anterior (RAS)
    return vol


def test_nifti_slice_selection_and_count(tmp_path):
    vol = _labelled_volume()
    path = tmp_path / "vol.nii.gz"
    path.write_bytes(nifti_bytes(vol, gz=True))
    data = path.read_bytes()
    assert nifti_slice_count(data, path.name) == 5
    for k in range(5):
        out = read_slice(path, slice_index=k)
        assert out.shape == (24, 20)  # rows: anterior -> posterior, columns: right -> left
        assert out[12, 10] == pytest.approx(float(window(np.float32(-1300 + 100 * k))), abs=1e-6)
    assert read_slice(path)[12, 10] == pytest.approx(float(window(np.float32(-1100))), abs=1e-6)  # middle
    with pytest.raises(ImageReadError, match="slice 5 requested but the volume has 5 slices"):
        read_slice(path, slice_index=5)


def test_nifti_is_shown_radiologically(tmp_path):
    # Anterior at the top, the patient's right on the viewer's left (as DICOM and the COVID-CT images).
    out = read_slice_bytes(nifti_bytes(_labelled_volume()), "vol.nii", slice_index=0)
    assert out[:3, :3].min() == 1.0
    assert out[3:, 3:].max() < 1.0


def test_nifti_canonical_orientation_undoes_a_flipped_permuted_affine(tmp_path):
    vol = _labelled_volume()
    # Store the same anatomy as (z, x, y) with z running head -> foot and x running right -> left.
    stored = np.ascontiguousarray(vol[::-1, :, ::-1].transpose(2, 0, 1))
    affine = np.array([[0, -1, 0, 0], [0, 0, 1, 0], [-1, 0, 0, 0], [0, 0, 0, 1]], float)
    data = nifti_bytes(stored, affine)
    assert nifti_slice_count(data, "p.nii") == 5
    plain = nifti_bytes(vol)
    for k in range(5):
        np.testing.assert_array_equal(read_slice_bytes(data, "p.nii", k), read_slice_bytes(plain, "v.nii", k))
    # And the same as nibabel's own canonical reordering.
    canon = np.asarray(nib.as_closest_canonical(nib.Nifti1Image(stored, affine)).dataobj)
    np.testing.assert_allclose(read_slice_bytes(data, "p.nii", 1), window(canon[::-1, ::-1, 1].T), atol=1e-6)


def test_single_slice_nifti_is_valid(tmp_path):
    # Decision: a volume of one slice (3-D with nz=1, or 2-D) is a valid input holding one slice.
    sl = _labelled_volume(nz=1)
    for vol in (sl, sl[:, :, 0], sl[:, :, :, None]):
        data = nifti_bytes(vol)
        assert nifti_slice_count(data, "one.nii") == 1
        out = read_slice_bytes(data, "one.nii")
        assert out.shape == (24, 20)
        assert out[12, 10] == pytest.approx(float(window(np.float32(-1300))), abs=1e-6)
        with pytest.raises(ImageReadError, match="slice 1 requested"):
            read_slice_bytes(data, "one.nii", slice_index=1)


def test_nifti_without_hounsfield_units_is_scaled_not_windowed():
    vol = np.zeros((20, 20, 3), np.float32)
    vol[:, :, 1] = 100.0
    vol[:10, :, 1] = 50.0
    out = read_slice_bytes(nifti_bytes(vol), "mr.nii", slice_index=1)
    assert set(np.unique(out).round(6)) == {0.5, 1.0}


def test_nifti_slice_count_errors():
    with pytest.raises(ImageReadError, match="^4d.nii: NIfTI file holds 3 volumes"):
        nifti_slice_count(nifti_bytes(np.zeros((32, 32, 4, 3), np.float32)), "4d.nii")
    with pytest.raises(ImageReadError, match="^junk.nii.gz: "):
        nifti_slice_count(b"\x1f\x8b\x08\x00garbage", "junk.nii.gz")


# ---------------------------------------------------------------- masks


def test_masks(tmp_path):
    binary = np.zeros((32, 32), np.uint8)
    binary[8:16] = 255
    Image.fromarray(binary).save(tmp_path / "bin.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "bin.png"), binary // 255)

    Image.fromarray(binary // 255).save(tmp_path / "zero_one.png")  # 0/1 stored as grey: kept, not zeroed
    np.testing.assert_array_equal(read_mask(tmp_path / "zero_one.png"), binary // 255)

    Image.fromarray(binary > 0).save(tmp_path / "bilevel.png")  # mode "1"
    np.testing.assert_array_equal(read_mask(tmp_path / "bilevel.png"), binary // 255)

    labels = np.zeros((32, 32), np.uint8)
    labels[:, 10:20], labels[:, 20:] = 1, 2
    pal = Image.frombytes("P", (32, 32), labels.tobytes())
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0, 0, 0] * 253)
    pal.save(tmp_path / "multi.png")
    out = read_mask(tmp_path / "multi.png")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, labels)


def test_check_mask_shape():
    mask = np.zeros((32, 40), np.uint8)
    assert check_mask_shape(mask, (32, 40), "m.png") is mask
    with pytest.raises(ImageReadError, match=r"^m\.png: mask is 40x32 pixels but its image is 32x40$"):
        check_mask_shape(mask, (40, 32), "m.png")


# ---------------------------------------------------------------- real data


def test_real_covidct_jpeg_named_png(data_root):
    folder = data_root / "covid-ct" / "CT_COVID"
    assert folder.is_dir(), f"{folder} missing: COVID_LAB_DATA must hold covid-ct/"
    path = next((p for p in sorted(folder.glob("*.png")) if p.read_bytes()[:3] == b"\xff\xd8\xff"), None)
    assert path is not None, f"no JPEG data named .png in {folder}; the real data set has 34"
    assert sniff_format(path.read_bytes(), path.name) == "jpeg"
    out = read_slice(path)
    with Image.open(path) as ref:
        assert ref.format == "JPEG"
        assert out.shape == (ref.height, ref.width)
        np.testing.assert_allclose(out, np.asarray(ref.convert("L")) / 255.0, atol=1e-6)
    assert out.dtype == np.float32 and 0 <= out.min() < out.max() <= 1


def test_real_ctmd_slices_saved_as_16bit_read_as_their_dicom(data_root, tmp_path):
    """COVID-CT-MD's DICOM (JPEG Lossless, HU) saved as the 16-bit PNG a research export makes (HU + 1024)."""
    from pydicom import dcmread

    folder = data_root / "covid-ct-md" / "COVID-19" / "P002"
    assert folder.is_dir(), f"{folder} missing: COVID_LAB_DATA must hold covid-ct-md/"
    files = sorted(f for f in folder.iterdir() if f.is_file())
    for f in files[:: max(1, len(files) // 6)]:
        ds = dcmread(f)
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        png = tmp_path / "export.png"
        Image.fromarray(np.clip(hu + imaging.CT_STORED_OFFSET, 0, None).astype(np.uint16)).save(png)
        np.testing.assert_allclose(read_slice(png), read_slice(f), atol=1e-6, err_msg=f.name)
