"""Whole scans for the Scan page: reading an upload (DICOM files, a .zip of them, a NIfTI volume) or a
COVID-CT-MD patient without ever raising, and the cached scoring of every slice (core.knowledge.scan).

A scan is keyed by the content digest of the files given (and the series picked among them); its table
by the run's stamp too, so a second visit, or a rerun, does not score it again. Uploaded names are only
shown (core.data.series reads zip members and uploads in memory; no name becomes a path).
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core.data.imaging import ImageReadError, sniff_format
from core.data.series import Volume, read_nifti, read_series_uploads, skipped
from core.errors import USER_ERRORS
from core.inference import LesionReader
from core.knowledge.scan import SIDES, score_volume
from core.knowledge.signs import NAMES
from core.pictures.data_views import LesionSource
from core.runs.runfolder import RunError, RunFolder, safe_child
from core.trust.ood import FLAG_COLUMN, WHY_COLUMN
from core.trust.scan_call import flag_columns
from dashboard import data, scan_images
from dashboard.scan_report import MIN_THIRDS, zone_levels
from dashboard.uploads import display_name


@dataclass
class ScanInput:
    name: str  # what the page calls the scan
    digest: str  # content digest of the files given
    given: int  # files given (a .zip's members counted, a .zip that cannot be opened as one)
    volumes: list[Volume] = field(default_factory=list)  # one per series, largest first
    rejected: list[str] = field(default_factory=list)  # one line per file in no volume, naming it
    error: str | None = None  # nothing could be read
    truth: str | None = None  # COVID-CT-MD's diagnosis of a picked patient


def digest_of(files: list[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for name, raw in files:
        h.update(name.encode("utf-8", "replace") + b"\0" + hashlib.sha256(raw).digest())
    return h.hexdigest()


def read_upload(files: list[tuple[str, bytes]]) -> ScanInput:
    """The volumes of uploaded files: one NIfTI volume, or DICOM series (files, .zip archives, an uploaded folder:
    its files come named by their path inside it, and the scan by the folder)."""
    given = files
    folders = {re.split(r"[\\/]", n, maxsplit=1)[0] for n, _ in given}
    folder = next(iter(folders)) if len(folders) == 1 and all(re.search(r"[\\/]", n) for n, _ in given) else None
    files = [(display_name(n), bytes(raw)) for n, raw in files if not skipped(n)]  # before the name loses its "."
    if not files:
        return ScanInput(display_name(given[0][0]), digest_of(given), len(given),
                         error="only a DICOMDIR index or hidden files were given; no slice to read")
    digest = digest_of(files)
    name = (f"folder {display_name(folder)}" if folder else files[0][0] if len(files) == 1
            else f"{files[0][0]} and {len(files) - 1} more")
    try:
        niftis = [n for n, raw in files if sniff_format(raw[:400], n) == "nifti"]
        if niftis:
            if len(files) > 1:
                return ScanInput(name, digest, len(files), error=f"{niftis[0]}: a NIfTI volume is a whole scan; "
                                                                 "upload it on its own, not among other files")
            return ScanInput(name, digest, 1, volumes=[read_nifti(files[0][1], files[0][0])])
        found = read_series_uploads(files)
    except ImageReadError as exc:
        return ScanInput(name, digest, len(files), error=str(exc))
    except Exception as exc:  # noqa: BLE001 (a reader library failing in a way we did not foresee)
        return ScanInput(name, digest, len(files),
                         error=f"{name}: could not be read as a CT scan ({type(exc).__name__})")
    given = sum(len(v) + len(v.left_out) for v in found.volumes) + len(found.rejected)
    rejected = [str(e) for e in found.rejected]
    if not found.volumes:
        why = "no DICOM series in the files given" + (": every file is named below" if rejected else "")
        return ScanInput(name, digest, given, rejected=rejected, error=why)
    return ScanInput(name, digest, given, found.volumes, rejected)


def read_patient(data_root: str, patient: str) -> ScanInput:
    """A COVID-CT-MD patient of the run's data root (core.data.ctmd.patient_volume), its diagnosis as truth."""
    from core.data.ctmd import by_patient, patient_volume, read_records

    try:
        records = by_patient(read_records(data_root)).get(patient) or []
        vol = patient_volume(data_root, patient)
    except USER_ERRORS as exc:
        return ScanInput(f"COVID-CT-MD {patient}", "", 0, error=str(exc))
    files = [(s.name, Path(s.name).read_bytes()) for s in vol.slices]
    return ScanInput(f"COVID-CT-MD {patient}", digest_of(files), len(records), [vol],
                     truth=records[0].diagnosis if records else None)


def ctmd_patients(data_root: str | None) -> dict[str, str]:
    """patient -> "P001 · COVID-19 · selection" for the COVID-CT-MD patients under the run's data root;
    {} when it has none."""
    from core.data.ctmd import REPORT, SELECTION, by_patient, read_records
    from core.data.roots import DataError

    if not data_root or not (Path(data_root) / "covid-ct-md").is_dir():
        return {}
    try:
        patients = by_patient(read_records(data_root))
    except DataError:
        return {}
    role = {**dict.fromkeys(SELECTION, "selection: may choose settings"), **dict.fromkeys(REPORT, "report only")}
    return {p: f"{p} · {rows[0].diagnosis}" + (f" · {role[p]}" if p in role else "") for p, rows in patients.items()}


def slice_line(row, index: int, call: str = "") -> str:
    """The Scan page's line of the slice on screen (a row of its table): where it lies, its file, `call` (the
    decision's words, when there is one), whether the out-of-distribution flag marks it, and each lung's lesion
    share."""
    where = "" if math.isnan(row.position_mm) else f" · {row.position_mm:g} mm"
    flagged = row.get(FLAG_COLUMN)  # absent: scored without the flag; NaN: a slice that could not be scored
    why = row.get(WHY_COLUMN) if isinstance(flagged, (bool, np.bool_)) and flagged else None
    return (f"**slice {index}**{where} · `{str(row.file).rsplit('/', 1)[-1]}`" + (f" · {call}" if call else "")
            + ("" if row.lung_found else " · no lung field found")
            + (f" · **{why}**" if why and row.lung_found else "")
            + "".join(f" · {NAMES[f'{s}_share']} {row[f'{s}_share']:.1%}" for s in SIDES
                      if not math.isnan(row[f"{s}_share"])))


def burden(columns, summary, table: pd.DataFrame) -> None:
    """The scan's lesion burden (core.knowledge.scan.ScanSummary of `table`) as metrics in three `columns` (opacity
    of each lung, the share in the lower third), then the caption of which slices count."""
    for col, side in zip(columns, SIDES):
        opacity = summary.opacity[side]
        col.metric(f"Opacity, {side} lung", "n/a" if math.isnan(opacity) else f"{opacity:.1%}",
                   help="lesion area / lung area of this lung, each summed over the slices with a lung field")
    lower = summary.zones["lower"]
    levels = zone_levels(table)
    few = not math.isnan(lower) and levels < MIN_THIRDS
    columns[2].metric("Lesion in the lower third", "n/a" if math.isnan(lower) or few else f"{lower:.0%}",
                      help="share of the scan's lesion area in the lower third of its lung extent (RSNA: COVID-19 "
                           "favours the lower zones); n/a without slice positions or without lesion, or with fewer "
                           f"than {MIN_THIRDS} slices with a lung field")
    verb = "has" if summary.with_lung == 1 else "have"
    counts = f"{summary.with_lung} of {slices_text(summary.slices)} {verb} a lung field"
    no_lung = summary.slices - summary.with_lung - summary.problems  # a slice not scored has no lung field either
    if no_lung:
        counts += (f"; {no_lung if summary.problems else 'the others'} (the scan's neck or abdomen) hold no lung and "
                   "are left out of every scan number")
    if summary.problems:
        counts += f"; {summary.problems} could not be scored (named in the table)"
    if few:
        counts += (f"; no lower third: {slices_text(levels)} with a lung field, too few to split the scan in "
                   "thirds")
    st.caption(counts + ".")


def slices_text(n: int) -> str:
    return f"{n} slice{'' if n == 1 else 's'}"


def slice_scroller(n: int, key: str) -> int:
    """The index of the slice on screen: a scroller over the series' `n` slices; a one-slice series has none."""
    if n < 2:  # st.slider refuses a range of one value
        return 0
    return st.slider("Slice (body order, foot to head when the series gives positions)", 0, n - 1, key=key)


def unscored(table: pd.DataFrame) -> str | None:
    """Why no slice of the scan could be scored (the table's problems, each once), or None when one was."""
    if not len(table) or (table.problem == "").any():
        return None
    problems = list(dict.fromkeys(table.problem))
    return ("; ".join(problems[:3]) + (f"; and {len(problems) - 3} more problems, in the table" if len(problems) > 3
                                       else ""))


# ---- cached reading and scoring ---------------------------------------------------------------------
@st.cache_resource(max_entries=4, show_spinner="Reading the series...")
def upload_input(digest: str, _files: tuple) -> ScanInput:
    """read_upload, once per content digest (the volumes keep the uploaded bytes)."""
    return read_upload(list(_files))


@st.cache_resource(max_entries=4, show_spinner="Reading the patient's series...")
def patient_input(data_root: str, patient: str) -> ScanInput:
    return read_patient(data_root, patient)


class _Locked:
    """A trained run (or a run's segmenter alone) whose analyse holds the dashboard's model lock, one slice at a
    time (other sessions interleave between slices)."""

    def __init__(self, tr):
        self.tr = tr

    def analyse(self, slice01):
        with data.MODEL_LOCK:
            return self.tr.analyse(slice01)

    def fusion_vector(self, a):
        with data.MODEL_LOCK:
            return self.tr.fusion_vector(a)


def flag_level(runs: str, name: str, stamp: str) -> tuple[float | None, str]:
    """(the run's out-of-distribution flag level, "") to score a scan's slices with, or (None, why the run has no
    flag)."""
    try:
        alpha = data.ood_alpha(runs, name, stamp)
        data.ood_flag(runs, name, stamp, alpha)
    except data.TRUST_ERRORS as exc:
        return None, str(exc)
    return alpha, ""


@st.cache_data(max_entries=8, show_spinner=False)
def scan_table(runs: str, name: str, stamp: str, digest: str, series: int, _volume: Volume,
               alpha: float | None = None) -> pd.DataFrame:
    """core.knowledge.scan.score_volume of the picked series with the run, with a progress bar; with `alpha`, every
    slice assessed by the run's out-of-distribution flag at that level (`flag_level`); cached by the run's stamp
    and the scan's content digest (a second visit or a rerun replays it)."""
    bar = st.progress(0.0, text=f"Scoring {len(_volume)} slices with run {name}...")

    def progress(done: int, total: int) -> None:
        bar.progress(done / total, text=f"Scoring slice {done} of {total} with run {name}...")

    extra = None if alpha is None else flag_columns(data.ood_flag(runs, name, stamp, alpha))
    table = score_volume(_Locked(data.trained(runs, name, stamp)), _volume, progress, extra)
    bar.empty()
    return table


def analyse_slice(tr, volume: Volume, index: int):
    """(slice in [0, 1], SliceAnalysis, fusion CAM) of one slice: the maps only the shown slice gets."""
    img = volume.image(index)
    with data.MODEL_LOCK:
        a = tr.analyse(img)
        cam = tr.fusion_cam(a)
    return img, a, cam


@st.cache_resource(max_entries=16, show_spinner="Analysing the slice...")
def slice_view(runs: str, name: str, stamp: str, digest: str, series: int, index: int, _volume: Volume):
    return analyse_slice(data.trained(runs, name, stamp), _volume, index)


@st.cache_data(max_entries=32, show_spinner=False)
def slice_pictures(runs: str, name: str, stamp: str, digest: str, series: int, index: int,
                   _volume: Volume) -> dict[str, bytes]:
    """scan_images.slice_pictures of the slice (PNG bytes)."""
    img, a, cam = slice_view(runs, name, stamp, digest, series, index, _volume)
    return scan_images.slice_pictures(img, a, cam)


@st.cache_data(max_entries=64, show_spinner=False)
def thumbnail(digest: str, series: int, index: int, _volume: Volume) -> bytes:
    return scan_images.thumbnail(_volume.image(index))


# ---- the Case view's scan slice ------------------------------------------------------------------------
@dataclass
class ScanCase:
    """A slice of a scan, opened in the Case view: what it needs to analyse it live with any run."""
    scan: str  # the scan's name
    digest: str
    series: int
    index: int
    position: float | None
    file: str
    slice01: np.ndarray
    truth: str | None = None

    @property
    def title(self) -> str:
        where = "" if self.position is None or np.isnan(self.position) else f", {self.position:g} mm"
        return f"{self.scan} · slice {self.index}{where}"


@st.cache_resource(max_entries=8, show_spinner="Analysing the scan slice...")
def case_analysis(runs: str, name: str, stamp: str, digest: str, series: int, index: int, _slice01: np.ndarray):
    """The live SliceAnalysis of a scan slice and its pictures (New slice's), for the Case view."""
    from dashboard.uploads import upload_images

    tr = data.trained(runs, name, stamp)
    with data.MODEL_LOCK:
        a = tr.analyse(_slice01)
        vector = tr.fusion_vector(a)
    return a, vector, upload_images(tr, a)


# ---- before the classifiers: the segmenter alone ----------------------------------------------------------
@st.cache_resource(max_entries=2, show_spinner="Loading the run's segmenter...")
def lesion_reader(runs: str, name: str, source: LesionSource) -> LesionReader:
    """core.inference.LesionReader of the run's segmenter `source` (dashboard.data_browser.lesion_source): a new
    round, or the stage's end, is a new source, so a new reader."""
    from core.pictures import data_views
    from core.training.segmentation import load_segmenter

    run = RunFolder(safe_child(runs, name))
    cfg = data_views.pipeline_config(run)
    if cfg is None:
        raise RunError(f"{run.path}: config.json records no pipeline settings")
    return LesionReader(cfg, data_views.fields(run, source.final), load_segmenter(str(source.path)))


@st.cache_data(max_entries=8, show_spinner=False)
def lesion_table(runs: str, name: str, source: LesionSource, digest: str, series: int,
                 _volume: Volume) -> pd.DataFrame:
    """core.knowledge.scan.score_volume of the picked series with the run's segmenter alone (no p(COVID) but the
    lesion share), with a progress bar; cached by the segmenter's source and the scan's content digest."""
    bar = st.progress(0.0, text=f"Reading the lesions of {len(_volume)} slices with run {name}'s segmenter...")

    def progress(done: int, total: int) -> None:
        bar.progress(done / total, text=f"Reading the lesions of slice {done} of {total}...")

    table = score_volume(_Locked(lesion_reader(runs, name, source)), _volume, progress)
    bar.empty()
    return table


@st.cache_data(max_entries=32, show_spinner="Reading the slice's lesions...")
def lesion_pictures(runs: str, name: str, source: LesionSource, digest: str, series: int, index: int,
                    _volume: Volume) -> dict[str, bytes]:
    """scan_images.slice_pictures of one slice with the segmenter alone: the slice and its lesions, no decision map."""
    img = _volume.image(index)
    with data.MODEL_LOCK:
        a = lesion_reader(runs, name, source).analyse(img)
    return scan_images.slice_pictures(img, a, None)
