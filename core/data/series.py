"""A CT scan read as one volume: a DICOM series (a folder, several files, in-memory uploads, a .zip of
them) or a NIfTI file, so that one scan-level consumer serves both.

    found = read_series(["scan/"])                      # SeriesSet: .volumes (largest axial first), .rejected
    found = read_series_uploads([("scan.zip", data)])   # the dashboard's upload: (name, bytes) pairs
    vol = found.volumes[0]                              # or read_nifti("vol.nii.gz")
    vol.series_uid, vol.ordering, vol.pixel_spacing, vol.slice_spacing, vol.gaps, vol.problems
    for s in vol.slices: s.name, s.position, s.instance, s.image()

Several series: the files are grouped by SeriesInstanceUID and every series becomes a volume of its own, the
largest axial one first (a study's coronal and sagittal reformats and its scout are no slices the networks read:
`Volume.axial`, `Volume.plane`); each volume but the first names its files in a note (nothing is dropped, nothing
merged).
A multi-frame file (Enhanced CT, as some scanners export a whole series) gives one slice per frame, named
"FILE (frame K)", each placed by its functional groups (Plane Position, Plane Orientation, Pixel Measures) and
rescaled by its Pixel Value Transformation (core.data.imaging.dicom_frame); a series of single-frame Enhanced CT
files is read through the same functional groups, one slice per file.
Order: Image Position (Patient) projected on the slice normal (Image Orientation (Patient)'s row x column)
when every slice has both; else Slice Location; else Instance Number; else the frames' stored order when
they are one multi-frame file's; else the file name (a problem). `ordering` says which. A step between
neighbours over GAP_FACTOR x the series' usual step (in mm, or in instance or frame numbers when those order it)
is a gap: both files are named and the volume is still read.
Files that cannot be part of a volume (not DICOM, no pixel data, a transfer syntax no decoder reads, a
slice of another size or orientation than most of its series) are one `ImageReadError` each, naming the file.

Headers are read up front; pixels are decoded one slice at a time when asked for (`VolumeSlice.image`), by
the same `read_slice_bytes` that `read_slice` uses, so a slice of a volume is the image read_slice gives
for its file. Nothing is cached: a 300-slice series holds its headers, not 300 decoded images (a multi-frame
file is held parsed, as its frames share it).
"""
from __future__ import annotations

import io
import math
import os
import statistics
import threading
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from core.data.dicom_place import (
    AXIAL,
    as_numbers,
    frame_field,
    frame_numbers,
    frame_orientation,
    header_numbers,
    plane_of,
)
from core.data.imaging import (
    ImageReadError,
    _problem,
    dicom_dataset,
    dicom_frame,
    nifti_axes,
    nifti_slice,
    open_nifti,
    printable,
    read_bytes,
    read_slice_bytes,
    sniff_format,
)

GAP_FACTOR = 1.5  # a step over 1.5x the usual one is a missing slice (CT reconstructions are evenly spaced)
# What a series input may hold: a CT series is a few hundred to a few thousand files of well under 1 MiB.
MAX_SERIES_FILES = 5000
MAX_ZIP_BYTES = 1 << 30  # all members inflated; a zip bomb is tiny on disk
MAX_MEMBER_BYTES = 128 << 20  # one slice of imaging.MAX_PIXELS at 16 bits
ORIENTATION_TOLERANCE = 1e-3  # direction cosines that differ by less are the same orientation
AXIAL_ONLY = "the networks read axial slices only"
SKIPPED_NAMES = ("DICOMDIR",)  # a DICOM index of the files beside it, no image
# Header fields worth showing beside a volume; never required. Names and ids are left out on purpose.
INFO_FIELDS = ("Modality", "StudyDescription", "SeriesDescription", "SeriesNumber", "StudyDate", "BodyPartExamined",
               "Manufacturer", "ManufacturerModelName", "ConvolutionKernel", "SliceThickness", "PatientSex",
               "PatientAge")
ORDERINGS = ("image position", "slice location", "instance number", "frame number", "file name", "NIfTI affine")
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a member first, or an empty archive


# ------------------------------------------------------------------------------------------- the volume

@dataclass(frozen=True)
class VolumeSlice:
    name: str  # the file (a zip member: "archive.zip/member"; a NIfTI slice: the NIfTI file)
    position: float | None  # mm along the slice normal (foot to head for axial CT); None: ordered without one
    instance: int | None  # DICOM Instance Number
    load: Callable[[], np.ndarray] = field(repr=False, compare=False)

    def image(self) -> np.ndarray:
        """The slice windowed to [0, 1], (H, W) float32, decoded now (read_slice's image of the file)."""
        return self.load()


@dataclass(frozen=True)
class Gap:
    before: str  # the files on either side
    after: str
    step: float
    usual: float
    unit: str  # "mm" or "instance numbers"

    @property
    def missing(self) -> int:
        """About how many slices are missing between the two."""
        return max(1, round(self.step / self.usual) - 1)

    def __str__(self) -> str:
        return (f"{self.before} and {self.after}: {self.step:g} {self.unit} apart, {self.step / self.usual:.1f}x the "
                f"series' usual {self.usual:g}; about {self.missing} slice{'s' if self.missing > 1 else ''} "
                "missing between them")


@dataclass
class Volume:
    slices: list[VolumeSlice]  # in body order (ascending by the ordering's key)
    ordering: str  # one of ORDERINGS
    shape: tuple[int, int]  # rows, columns of every slice
    series_uid: str | None = None
    pixel_spacing: tuple[float, float] | None = None  # mm between rows, between columns
    slice_spacing: float | None = None  # mm, the usual step between neighbours
    info: dict = field(default_factory=dict)  # INFO_FIELDS present in the header
    gaps: list[Gap] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what is wrong with the volume, gaps included
    notes: list[str] = field(default_factory=list)  # worth saying, not wrong (one of several series)
    left_out: list[ImageReadError] = field(default_factory=list)  # files of this series not in the volume
    plane: str | None = None  # PLANES' or "oblique", from Image Orientation (Patient); None: not stated (NIfTI: axial)

    @property
    def axial(self) -> bool:
        """Axial slices, as the networks were trained on (a series that does not state its orientation counts)."""
        return self.plane in (None, AXIAL)

    def not_axial(self) -> str:
        """Why the slices of a series that is not axial are not scored ("" for an axial one)."""
        if self.axial:
            return ""
        return (f"series {self.series_uid or '(no UID)'} holds {self.plane} slices (a reformat or a scout): "
                f"{AXIAL_ONLY}, so its slices are not scored; read the study's axial series")

    def __len__(self) -> int:
        return len(self.slices)

    @property
    def has_gap(self) -> bool:
        return bool(self.gaps)

    def image(self, index: int) -> np.ndarray:
        return self.slices[index].image()

    def images(self) -> Iterator[np.ndarray]:
        """Every slice's image in order, one decoded at a time."""
        return (s.image() for s in self.slices)

    def summary(self) -> dict:
        """What a check or a page shows of the volume (JSON-ready)."""
        return {"series_uid": self.series_uid, "slices": len(self), "ordering": self.ordering,
                "shape": list(self.shape), "first": self.slices[0].name, "last": self.slices[-1].name,
                "pixel_spacing_mm": None if self.pixel_spacing is None else [round(v, 4) for v in self.pixel_spacing],
                "slice_spacing_mm": None if self.slice_spacing is None else round(self.slice_spacing, 4),
                "gaps": len(self.gaps), "problems": self.problems, "notes": self.notes,
                "left_out": [str(e) for e in self.left_out], "info": self.info, "plane": self.plane}


@dataclass
class SeriesSet:
    volumes: list[Volume]  # one per series, the largest axial first
    rejected: list[ImageReadError]  # files in no series (not DICOM, unreadable, no pixel data...)

    @property
    def errors(self) -> list[ImageReadError]:
        """Every file that is in no volume, each naming the file."""
        return self.rejected + [e for v in self.volumes for e in v.left_out]


# ------------------------------------------------------------------------------------------ sources

@dataclass(frozen=True)
class _Source:
    name: str
    read: Callable[[], bytes]  # raises ImageReadError naming the file


def skipped(name: str) -> bool:
    """A file a series' folder holds beside its slices, never read: DICOMDIR, hidden files (any path, / or \\)."""
    base = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return base.startswith(".") or base.upper() in SKIPPED_NAMES  # .DS_Store, __MACOSX's ._files, DICOMDIR


def is_zip(path: Path) -> bool:
    """A .zip archive, by name or by its first bytes."""
    if path.suffix.lower() == ".zip":
        return True
    try:
        with open(path, "rb") as f:
            return f.read(4) in _ZIP_MAGICS
    except OSError:
        return False


def _folder_sources(folder: Path) -> list[_Source]:
    files: list[Path] = []
    for base, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files += [Path(base) / f for f in sorted(filenames) if not skipped(f)]
        if len(files) > MAX_SERIES_FILES:
            raise ImageReadError(str(folder), f"holds over {MAX_SERIES_FILES} files; pass the folder of one series")
    if not files:
        raise ImageReadError(str(folder), "holds no files; expected the DICOM files of a series")
    return [_Source(str(p), partial(read_bytes, p)) for p in files]


def _member(open_zip: Callable[[], zipfile.ZipFile], member: str, name: str) -> bytes:
    """One member's bytes, read no further than MAX_MEMBER_BYTES whatever its header declares."""
    try:
        with open_zip() as zf:
            info = zf.getinfo(member)
            if info.file_size > MAX_MEMBER_BYTES:
                raise ImageReadError(name, f"inflates to {info.file_size >> 20} MiB, over the {MAX_MEMBER_BYTES >> 20}"
                                           " MiB a slice may take (refused as a possible zip bomb)")
            if info.flag_bits & 0x1:
                raise ImageReadError(name, "is encrypted in its archive")
            with zf.open(info) as f:
                data = f.read(MAX_MEMBER_BYTES + 1)
    except ImageReadError:
        raise
    except Exception as exc:  # BadZipFile (bad CRC), NotImplementedError (compression method), zlib.error...
        raise ImageReadError(name, f"cannot be taken out of its archive ({_problem(exc)})") from None
    if len(data) > MAX_MEMBER_BYTES:
        raise ImageReadError(name, f"inflates past {MAX_MEMBER_BYTES >> 20} MiB (refused as a possible zip bomb)")
    return data


def _zip_sources(label: str, open_zip: Callable[[], zipfile.ZipFile]) -> list[_Source]:
    """The members of an archive as sources. Member names only label the slices: nothing is written to disk,
    so no name from the archive ever becomes a path."""
    try:
        with open_zip() as zf:
            infos = [i for i in zf.infolist() if not i.is_dir() and not skipped(i.filename)]
    except Exception as exc:  # BadZipFile, OSError, a truncated central directory...
        raise ImageReadError(label, f"not a readable .zip archive ({_problem(exc)})") from None
    if len(infos) > MAX_SERIES_FILES:
        raise ImageReadError(label, f"holds {len(infos)} files, over the {MAX_SERIES_FILES} a series may have")
    total = sum(i.file_size for i in infos)
    if total > MAX_ZIP_BYTES:
        raise ImageReadError(label, f"inflates to {total >> 20} MiB, over the {MAX_ZIP_BYTES >> 20} MiB limit "
                                    "(refused as a possible zip bomb)")
    if not infos:
        raise ImageReadError(label, "holds no files; expected the DICOM files of a series")
    return [_Source(f"{label}/{printable(i.filename)}", partial(_member, open_zip, i.filename,
                                                                 f"{label}/{printable(i.filename)}"))
            for i in infos]


def _path_sources(path: Path) -> list[_Source]:
    if path.is_dir():
        return _folder_sources(path)
    if is_zip(path):
        return _zip_sources(str(path), partial(zipfile.ZipFile, path))
    return [_Source(str(path), partial(read_bytes, path))]


# ------------------------------------------------------------------------------------------ headers

@dataclass(frozen=True)
class _Header:
    source: _Source
    uid: str | None
    shape: tuple[int, int]
    instance: int | None
    location: float | None  # Slice Location
    position: tuple[float, ...] | None  # Image Position (Patient)
    orientation: tuple[float, ...] | None  # Image Orientation (Patient)
    pixel_spacing: tuple[float, ...] | None
    info: dict
    load: Callable[[], np.ndarray]  # the slice's image, decoded when called
    frame: int | None = None  # the frame of a multi-frame file (0-based); None: a file of one slice


def _headers(src: _Source) -> list[_Header]:
    """The slice of a DICOM file, or the frames of a multi-frame one (Enhanced CT), as headers."""
    data = src.read()
    if data[:4] in _ZIP_MAGICS:
        raise ImageReadError(src.name, "a .zip archive among the files of a series; pass it on its own")
    if sniff_format(data, src.name) != "dicom":
        raise ImageReadError(src.name, "not a DICOM file (a series is read from DICOM files only)")
    with warnings.catch_warnings():  # pydicom warns of values off the standard (UUIDs as UIDs...) it still reads
        warnings.simplefilter("ignore", UserWarning)
        ds = dicom_dataset(src.name, data)
        uid = str(ds.get("SeriesInstanceUID") or "").strip() or None
        info = {k: str(ds.get(k)).strip() for k in INFO_FIELDS if str(ds.get(k) or "").strip()}
        shape = (int(ds.Rows), int(ds.Columns))
        frames = int(ds.get("NumberOfFrames") or 1)
        if frames > 1:
            return _frame_headers(src, ds, uid, shape, info, frames)
        instance = header_numbers(ds, "InstanceNumber", 1)
        location = header_numbers(ds, "SliceLocation", 1)
        # A single-frame Enhanced CT file keeps its place in its functional groups, as a multi-frame one does.
        return [_Header(src, uid, shape, None if instance is None else int(instance[0]),
                        None if location is None else location[0],
                        frame_numbers(ds, 0, "PlanePositionSequence", "ImagePositionPatient", 3),
                        frame_orientation(ds, 0),
                        frame_numbers(ds, 0, "PixelMeasuresSequence", "PixelSpacing", 2), info,
                        partial(_load_dicom, src))]


class _MultiFrame:
    """A multi-frame file parsed once and held (its frames share one dataset), each frame decoded when asked for."""

    def __init__(self, name: str, ds):
        self.name, self.ds, self.lock = name, ds, threading.Lock()

    def frame(self, k: int) -> np.ndarray:
        with self.lock:  # one decoder at a time on the shared dataset
            return dicom_frame(self.name, self.ds, k)


def _frame_headers(src: _Source, ds, uid: str | None, shape: tuple[int, int], info: dict, frames: int) -> list[_Header]:
    """One header per frame: where an enhanced file keeps each frame's place (its functional groups: Plane Position,
    Plane Orientation, Pixel Measures; the top level's as a fallback). A top-level Image Position (Patient) places the
    first frame only, so the frames of a file with several and no per-frame position have none (frame-number order)."""
    held = _MultiFrame(src.name, ds)
    position = lambda k: (frame_numbers(ds, k, "PlanePositionSequence", "ImagePositionPatient", 3) if frames == 1 else
                          as_numbers(frame_field(ds, k, "PlanePositionSequence", "ImagePositionPatient"), 3))
    return [_Header(_Source(f"{src.name} (frame {k + 1})", src.read), uid, shape, None, None, position(k),
                    frame_orientation(ds, k),
                    frame_numbers(ds, k, "PixelMeasuresSequence", "PixelSpacing", 2), info, partial(held.frame, k), k)
            for k in range(frames)]


# ------------------------------------------------------------------------------------------ assembly

def _same_orientation(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return max(abs(x - y) for x, y in zip(a, b)) <= ORIENTATION_TOLERANCE


def _keep_consistent(headers: list[_Header], uid: str | None) -> tuple[list[_Header], list[ImageReadError]]:
    """The slices of the series' most common size and orientation, and the others, each named."""
    series = f"series {uid}" if uid else "the series"
    size = Counter(h.shape for h in headers).most_common(1)[0][0]
    kept, out = [], []
    for h in headers:
        if h.shape != size:
            out.append(ImageReadError(h.source.name, f"slice is {h.shape[1]}x{h.shape[0]} pixels but most of {series} "
                                                     f"is {size[1]}x{size[0]}; left out of the volume"))
        else:
            kept.append(h)
    oriented = [h.orientation for h in kept if h.orientation is not None]
    if oriented:
        ref = max(oriented, key=lambda o: sum(_same_orientation(o, p) for p in oriented))
        for h in list(kept):
            if h.orientation is not None and not _same_orientation(h.orientation, ref):
                kept.remove(h)
                out.append(ImageReadError(h.source.name, f"orientation {[round(v, 4) for v in h.orientation]} differs "
                                                         f"from the rest of {series} ({[round(v, 4) for v in ref]}); "
                                                         "left out of the volume"))
    return kept, out


def _file_of(h: _Header) -> str:
    """The file a header comes from (a frame's source is named "FILE (frame K)")."""
    return h.source.name if h.frame is None else h.source.name.rsplit(" (frame ", 1)[0]


def _order(headers: list[_Header]) -> tuple[str, list[float | None], list[str]]:
    """(ordering, each slice's sort key, problems) by the first ordering every slice supports."""
    problems: list[str] = []
    ref = next((h.orientation for h in headers if h.orientation is not None), None)
    normal = None if ref is None else np.cross(ref[:3], ref[3:])
    if normal is not None and np.linalg.norm(normal) > 0:
        normal = normal / np.linalg.norm(normal)
        if all(h.position is not None and h.orientation is not None for h in headers):
            return "image position", [float(np.dot(h.position, normal)) for h in headers], problems
    lacking = sum(h.position is None or h.orientation is None for h in headers)
    if lacking < len(headers):
        problems.append(f"{lacking} of {len(headers)} slices have no Image Position/Orientation (Patient); "
                        "ordered by the next field every slice has")
    if all(h.location is not None for h in headers):
        return "slice location", [h.location for h in headers], problems
    if all(h.instance is not None for h in headers):
        return "instance number", [float(h.instance) for h in headers], problems
    if all(h.frame is not None for h in headers) and len({_file_of(h) for h in headers}) == 1:
        return "frame number", [float(h.frame) for h in headers], problems  # one multi-frame file's stored order
    problems.append("no slice position, slice location or instance number on every slice: ordered by file name, "
                    "which need not be the body's order")
    return "file name", [None] * len(headers), problems


def _steps(slices: list[VolumeSlice], keys: list[float], unit: str) -> tuple[float | None, list[Gap], list[str]]:
    """(usual step, gaps, duplicates) along the ordering's keys."""
    steps = np.diff(keys)
    tiny = 1e-3  # mm or instance numbers: the same place
    moving = [float(s) for s in steps if s > tiny]
    if not moving:
        usual = None
    else:
        usual = statistics.median_low(moving)  # the low median: with few steps a gap cannot drag it up
    gaps, duplicates = [], []
    for i, step in enumerate(steps):
        a, b = slices[i].name, slices[i + 1].name
        if step <= tiny:
            duplicates.append(f"{a} and {b}: both at {keys[i]:g} {unit} (a duplicate slice, or two acquisitions "
                              "in one series)")
        elif usual is not None and len(moving) >= 2 and step > GAP_FACTOR * usual:
            gaps.append(Gap(a, b, float(step), usual, unit))
    return usual, gaps, duplicates


def _load_dicom(src: _Source) -> np.ndarray:
    return read_slice_bytes(src.read(), src.name)


def slice_plane(data: bytes, name: str, frame: int | None = None) -> str | None:
    """The plane of one DICOM slice (frame `frame` of a multi-frame file, default its middle one) as `plane_of` names
    it; None for a file that is no DICOM or states no orientation (a PNG, a NIfTI volume read along its axial axis)."""
    if sniff_format(data, name) != "dicom":
        return None
    return _dataset_plane(dicom_dataset(name, data), frame)


def _dataset_plane(ds, frame: int | None) -> str | None:
    frames = int(ds.get("NumberOfFrames") or 1)
    return plane_of(frame_orientation(ds, frames // 2 if frame is None else frame))


def _not_axial_problem(plane: str | None) -> str:
    if plane in (None, AXIAL):
        return ""
    return f"a {plane} slice (a reformat or a scout): {AXIAL_ONLY}, so it is not scored"


def not_axial_slice(name: str, plane: str | None) -> str:
    """Why a lone slice of `plane` is not scored ("" for an axial one, or one without a stated plane)."""
    problem = _not_axial_problem(plane)
    return f"{name}: {problem}" if problem else ""


def read_axial_slice(data: bytes, name: str, index: int | None = None) -> np.ndarray:
    """read_slice_bytes of one slice file, a DICOM slice that is not axial refused (an ImageReadError naming it);
    a DICOM file is parsed once, for its plane and its pixels."""
    if sniff_format(data, name) != "dicom":
        return read_slice_bytes(data, name, index)
    ds = dicom_dataset(name, data)
    problem = _not_axial_problem(_dataset_plane(ds, index))
    if problem:
        raise ImageReadError(name, problem)
    return dicom_frame(name, ds, index)


def _volume(headers: list[_Header], uid: str | None) -> Volume:
    kept, left_out = _keep_consistent(headers, uid)  # never empty: the most common size and orientation stay
    ordering, keys, problems = _order(kept)
    by_name = lambda i: (_file_of(kept[i]), kept[i].frame or 0)
    if ordering == "file name":
        order = sorted(range(len(kept)), key=by_name)
    else:
        order = sorted(range(len(kept)), key=lambda i: (keys[i], kept[i].instance or 0, by_name(i)))
    kept = [kept[i] for i in order]
    keys = [keys[i] for i in order]
    positional = ordering in ("image position", "slice location")
    slices = [VolumeSlice(h.source.name, k if positional else None, h.instance, h.load) for h, k in zip(kept, keys)]
    usual, gaps, duplicates = (None, [], [])
    if ordering != "file name":
        unit = "mm" if positional else ordering.replace("number", "numbers")
        usual, gaps, duplicates = _steps(slices, keys, unit)
    if uid is None:
        problems.append("no SeriesInstanceUID: the files without one are taken as one series")
    first = kept[0]
    plane = plane_of(next((h.orientation for h in kept if h.orientation is not None), None))
    vol = Volume(slices=slices, ordering=ordering, shape=first.shape, series_uid=uid,
                 pixel_spacing=first.pixel_spacing, slice_spacing=usual if positional else None, info=first.info,
                 gaps=gaps, problems=problems + [f"gap: {g}" for g in gaps] + duplicates, left_out=left_out,
                 plane=plane)
    if not vol.axial:
        vol.problems.insert(0, vol.not_axial())
    return vol


def _slices(n: int) -> str:
    return f"{n} slice{'s' if n != 1 else ''}"


def _assemble(sources: list[_Source], rejected: list[ImageReadError]) -> SeriesSet:
    groups: dict[str | None, list[_Header]] = {}
    for src in sources:
        try:
            headers = _headers(src)
        except ImageReadError as exc:
            rejected.append(exc)
            continue
        for h in headers:
            groups.setdefault(h.uid, []).append(h)
    volumes = [_volume(headers, uid) for uid, headers in groups.items()]
    volumes.sort(key=lambda v: (not v.axial, -(len(v) + len(v.left_out))))  # the largest axial series first
    if len(volumes) > 1:
        main = volumes[0]
        first = "the largest axial series" if main.axial and any(not v.axial for v in volumes) else "the largest series"
        for v in volumes[1:]:
            names = v.slices[0].name + (f" and {len(v) - 1} more" if len(v) > 1 else "")
            v.notes.append(f"{names}: series {v.series_uid} ({_slices(len(v))}) is not {first} given "
                           f"({main.series_uid}, {_slices(len(main))}); read as a volume of its own")
    return SeriesSet(volumes, rejected)


# ------------------------------------------------------------------------------------------ entry points

def read_series(paths: str | Path | Iterable[str | Path]) -> SeriesSet:
    """Read DICOM series from folders (walked, `skipped` files left), .zip archives and files."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    sources: list[_Source] = []
    rejected: list[ImageReadError] = []
    for p in paths:
        try:
            sources += _path_sources(Path(p))
        except ImageReadError as exc:
            rejected.append(exc)
    return _assemble(sources, rejected)


def read_series_uploads(files: Iterable[tuple[str, bytes]]) -> SeriesSet:
    """Read DICOM series from in-memory (name, bytes) pairs (an upload, an uploaded folder); a .zip among them is
    opened; what a folder's walk skips is skipped."""
    sources: list[_Source] = []
    rejected: list[ImageReadError] = []
    for name, data in files:
        if skipped(name):
            continue
        data = bytes(data)
        if data[:4] in _ZIP_MAGICS:
            try:
                sources += _zip_sources(name, partial(_open_zip_bytes, data))
            except ImageReadError as exc:
                rejected.append(exc)
        else:
            sources.append(_Source(name, partial(_given, name, data)))
    return _assemble(sources, rejected)


def _open_zip_bytes(data: bytes) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(data))  # a file object of its own for each read: safe across threads


def _given(name: str, data: bytes) -> bytes:
    if not data:
        raise ImageReadError(name, "file is empty (0 bytes)")
    return data


def read_nifti(source: str | Path | bytes, name: str | None = None) -> Volume:
    """A NIfTI file as a Volume: its axial slices foot to head, as read_slice gives them one by one."""
    if isinstance(source, (str, Path)):
        name = name or str(source)
        source = read_bytes(Path(source))
    name = name or "volume.nii"
    img = open_nifti(name, bytes(source))
    shape = (tuple(int(n) for n in img.shape) + (1,))[:3]
    axis, flip, rest = nifti_axes(img)
    n = shape[axis]
    column = np.asarray(img.affine, dtype=float)[:3, axis]
    step = float(np.linalg.norm(column))
    origin = np.asarray(img.affine, dtype=float)[:3, 3]
    stored = [k if flip > 0 else n - 1 - k for k in range(n)]
    positions = ([float(np.dot(origin + column * i, flip * column / step)) for i in stored]
                 if step > 0 and math.isfinite(step) else [None] * n)
    # the stored axis of the slice's columns (canonical x, left-right) and rows (canonical y, posterior-anterior)
    others = [i for i in range(3) if i != axis]  # in the order of rest's rows
    stored_of = {int(rest[j, 0]): others[j] for j in range(2)}
    col_axis, row_axis = stored_of[0], stored_of[1]
    slices = [VolumeSlice(name, positions[k], None, partial(nifti_slice, img, name, k)) for k in range(n)]
    return Volume(slices=slices, ordering="NIfTI affine", shape=(shape[row_axis], shape[col_axis]),
                  pixel_spacing=tuple(float(np.linalg.norm(np.asarray(img.affine)[:3, i])) for i in (row_axis, col_axis)),
                  slice_spacing=step if positions[0] is not None else None, plane=AXIAL)  # read along its axial axis


# ------------------------------------------------------------------------------------------ command inputs

def group_inputs(paths: Iterable[str | Path]) -> list[tuple[str, list]]:
    """How a command takes its file arguments, in their order and as given: ("series", [folder or .zip]) for a
    folder or archive; ("series", files) for loose DICOM files that share a SeriesInstanceUID with another loose
    file (at the place of the first of them); ("series", [file]) for a multi-frame DICOM file (its frames are the
    slices of a scan); ("slice", [file]) for any other file, read alone as before."""
    given = list(paths)
    loose = {i: _peek(Path(p)) for i, p in enumerate(given) if not Path(p).is_dir() and not is_zip(Path(p))}
    uid_of = {i: uid for i, (uid, _) in loose.items()}
    shared = {u for u, k in Counter(u for u in uid_of.values() if u).items() if k > 1}
    out: list[tuple[str, list]] = []
    placed: set[str] = set()
    for i, p in enumerate(given):
        if i not in loose:
            out.append(("series", [p]))
            continue
        uid, frames = loose[i]
        if uid in shared:
            if uid not in placed:
                placed.add(uid)
                out.append(("series", [q for j, q in enumerate(given) if uid_of.get(j) == uid]))
        else:
            out.append(("series" if frames > 1 else "slice", [p]))
    return out


def _peek(path: Path) -> tuple[str | None, int]:
    """A DICOM file's SeriesInstanceUID and number of frames from its header alone; (None, 1) for anything else
    (its reader names the problem)."""
    import pydicom

    try:
        with open(path, "rb") as f:
            head = f.read(132)
        if sniff_format(head, path.name) != "dicom":
            return None, 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True,
                                 specific_tags=["SeriesInstanceUID", "NumberOfFrames"])
            return str(ds.get("SeriesInstanceUID") or "").strip() or None, int(ds.get("NumberOfFrames") or 1)
    except Exception:  # unreadable: read as a plain slice, whose reader names the problem
        return None, 1
