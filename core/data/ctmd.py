"""COVID-CT-MD (sample): a third hospital's chest CT, 6 patients as DICOM series (covid-ct-md/PROVENANCE.md).

    records = read_ctmd(DATA)              # every row of slices.csv, its file checked present
    vol = patient_volume(DATA, "P001")     # core.data.series.Volume, in body order
    LABELS["CAP"]                          # 0: the classifier is scored COVID-19 against the rest

Layout: covid-ct-md/slices.csv (file, diagnosis, patient, instance, slice_location, infection_visible) and
covid-ct-md/<diagnosis>/<patient>/*.dcm, JPEG Lossless, every second slice. An external check from a source
neither COVID-CT nor COVID-SemiSeg shares; with two patients per diagnosis it is reported per patient, and
only SELECTION's patients may choose anything (REPORT's are only reported). Optional in a data root: no
reader of the other sets needs it. A slice of `patient_volume` is named by the path its record holds.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from core.data.roots import DataError, dataset_root
from core.data.series import Volume, read_series

FOLDER = "covid-ct-md"
CSV = "slices.csv"
COLUMNS = ("file", "diagnosis", "patient", "instance", "slice_location", "infection_visible")
LABELS = {"COVID-19": 1, "Normal": 0, "CAP": 0}  # CAP: community-acquired pneumonia, not COVID-19
SELECTION = ("P001", "normal001", "cap001")  # one patient per diagnosis: these may choose settings
REPORT = ("P002", "normal002", "cap002")  # these are only reported
LAYOUT = f"COVID-CT-MD sample ({CSV}, COVID-19/, Normal/, CAP/)"


@dataclass(frozen=True)
class CtmdSlice:
    path: Path
    file: str  # as slices.csv names it, under covid-ct-md/
    diagnosis: str  # COVID-19, Normal or CAP
    patient: str
    instance: int  # DICOM Instance Number
    slice_location: float  # mm
    infection_visible: bool | None  # the radiologists' slice label; None where there is none (normal patients)

    @property
    def label(self) -> int:
        return LABELS[self.diagnosis]


def ctmd_root(data_root: str | Path) -> Path:
    """covid-ct-md/ under the data root (or the folder itself), holding slices.csv."""
    given = Path(data_root)
    if given.is_dir() and not (given / FOLDER).is_dir() and not (given / CSV).is_file():
        raise DataError(f"{given / FOLDER}: missing; expected the {LAYOUT} there")
    root = dataset_root(data_root, FOLDER, "COVID-19", LAYOUT)
    if not (root / CSV).is_file():
        raise DataError(f"{root / CSV}: missing; expected COVID-CT-MD's slice list ({', '.join(COLUMNS)})")
    return root


def _record(root: Path, row: dict, line: int) -> CtmdSlice:
    where = f"{root / CSV}, line {line}"
    file = (row.get("file") or "").strip()
    rel = PurePosixPath(file)
    if not file or rel.is_absolute() or ".." in rel.parts:
        raise DataError(f"{where}: file {file!r} is not a path under {root}")
    if row.get("diagnosis") not in LABELS:
        raise DataError(f"{where}: diagnosis {row.get('diagnosis')!r}; expected one of {', '.join(LABELS)}")
    visible = (row.get("infection_visible") or "").strip()
    try:
        return CtmdSlice(path=root / rel, file=file, diagnosis=row["diagnosis"], patient=row["patient"].strip(),
                         instance=int(row["instance"]), slice_location=float(row["slice_location"]),
                         infection_visible=None if visible == "" else bool(int(visible)))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{where}: unreadable row ({type(exc).__name__}: {exc})") from None


def read_records(data_root: str | Path) -> list[CtmdSlice]:
    """The rows of slices.csv, in file order (their files are not checked: check-data counts them)."""
    root = ctmd_root(data_root)
    with open(root / CSV, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{root / CSV}: no column {', '.join(missing)}; expected {', '.join(COLUMNS)}")
        records = [_record(root, row, line) for line, row in enumerate(reader, start=2)]
    if not records:
        raise DataError(f"{root / CSV}: lists no slice")
    return records


def _present(records: list[CtmdSlice]) -> list[CtmdSlice]:
    """The records, when every file they list is there; else an error naming the missing ones."""
    missing = [str(r.path) for r in records if not r.path.is_file()]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise DataError(f"COVID-CT-MD: files listed in {CSV} missing ({len(missing)}): {', '.join(missing[:3])}{more}")
    return records


def read_ctmd(data_root: str | Path) -> list[CtmdSlice]:
    """Every row of slices.csv; a listed file that is not there is an error naming it."""
    return _present(read_records(data_root))


def by_patient(records: list[CtmdSlice]) -> dict[str, list[CtmdSlice]]:
    out: dict[str, list[CtmdSlice]] = {}
    for r in records:
        out.setdefault(r.patient, []).append(r)
    return out


def patient_volume(data_root: str | Path, patient: str) -> Volume:
    """One patient's folder read as a volume (core.data.series); it must hold exactly the files slices.csv lists."""
    patients = by_patient(read_records(data_root))
    if patient not in patients:
        raise DataError(f"COVID-CT-MD: no patient {patient!r} in {CSV}; it lists {', '.join(patients)}")
    records = _present(patients[patient])
    folder = records[0].path.parent
    found = read_series(folder)
    if found.errors or len(found.volumes) != 1:
        lines = [str(e) for e in found.errors] + [n for v in found.volumes for n in v.notes]
        raise DataError(f"COVID-CT-MD patient {patient}: {folder} is not one series of readable slices: "
                        f"{lines[0]}" + (f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""))
    vol = found.volumes[0]
    listed = {str(r.path) for r in records}
    read = {s.name for s in vol.slices}
    if read != listed:
        extra = sorted(read - listed)
        raise DataError(f"COVID-CT-MD patient {patient}: {folder} holds {len(read)} slices, {CSV} lists {len(listed)}"
                        + (f"; not listed: {', '.join(extra[:3])}" if extra else ""))
    return vol
